//! Unix sockets, found through sock_diag: names, peers, queues, pending connections, fds in flight.

pub mod dump;
pub mod restore;
