//! Terminals: ptys (both ends, termios, winsize, queued bytes), the shell job's terminal and controlling terminals (`pty`).

pub mod dump;
pub mod dump_info;
pub mod pty;
pub mod restore;
