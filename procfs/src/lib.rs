//! Parsers for the /proc files a dump reads. Each parser takes text (or bytes) so that it can be
//! tested on captured samples; thin readers open the real files.
