//! Regular files and memory char devices (the dump half is in `table`, where every description is numbered).

pub mod restore;
