//! The error of dumping or restoring one namespace's images.

#[derive(Debug, thiserror::Error)]
pub enum NsImageError {
    #[error("{kind} namespace: {source}")]
    Image {
        kind: &'static str,
        source: criu_proto::Error,
    },
    #[error("{kind} namespace: {source}")]
    Enter {
        kind: &'static str,
        source: crate::enter::EnterError,
    },
    #[error("{kind} namespace: {what}: {source}")]
    Io {
        kind: &'static str,
        what: String,
        source: std::io::Error,
    },
    #[error("{kind} namespace: {what}")]
    Bad { kind: &'static str, what: String },
    #[error(transparent)]
    Ipc(#[from] crate::ipc::IpcError),
    #[error("mount namespace: {0}")]
    Mount(#[from] criu_mounts::MountError),
    #[error("{kind} namespace: {source}")]
    Tracee {
        kind: &'static str,
        source: criu_tracee::TraceeError,
    },
}

/// Short constructors that name the kind once per module.
pub(crate) fn image(kind: &'static str) -> impl Fn(criu_proto::Error) -> NsImageError {
    move |source| NsImageError::Image { kind, source }
}

pub(crate) fn enter(kind: &'static str) -> impl Fn(crate::enter::EnterError) -> NsImageError {
    move |source| NsImageError::Enter { kind, source }
}

pub(crate) fn io(kind: &'static str, what: String) -> impl FnOnce(std::io::Error) -> NsImageError {
    move |source| NsImageError::Io { kind, what, source }
}

pub(crate) fn tracee(kind: &'static str) -> impl Fn(criu_tracee::TraceeError) -> NsImageError {
    move |source| NsImageError::Tracee { kind, source }
}
