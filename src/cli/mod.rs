//! Command line parsing
