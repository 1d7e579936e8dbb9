//! POSIX message queues (mq_open fds): files.img has them as EXT files (CRIU's kind for files
//! its plugins handle; CRIU itself refuses these fds), their descriptions and queues go to
//! criu-rs's own `posix-mq-files.img` (see `criu_ns::mqueue` for the queue itself).

pub mod dump;
pub mod restore;
