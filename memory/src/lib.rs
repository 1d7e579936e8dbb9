//! Memory: VMAs, the pagemap and page images. `dump` reads a stopped task's present pages into
//! `pagemap-*.img`/`pages-*.img`; `restore` maps the VMAs back and fills them.
pub mod aio;
pub mod chain;
pub mod dedup;
pub mod dump_mm;
pub mod dump_pages;
pub mod dump_shmem;
pub mod dump_vmas;
pub mod fill;
pub mod inherited;
pub mod page_server;
pub mod rebuild;
pub mod restore;
pub mod tls;
pub mod track;
pub mod vma;
