//! memfds (name, seals, contents) and shared anonymous memory objects (`shmem`).

pub mod dump;
pub mod restore;
pub mod shmem;
