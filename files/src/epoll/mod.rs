//! epoll instances: their targets (fd, events, data), also epolls in flight in SCM_RIGHTS.

pub mod dump;
pub mod restore;
