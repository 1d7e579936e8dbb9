//! Errors of image reading, writing and JSON conversion. Each names the file and, where it
//! applies, the byte offset at which the image went wrong.

/// An image could not be read, written or converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at byte {offset}: {what}")]
    Format {
        path: String,
        offset: u64,
        what: String,
    },
    #[error("{path}: at byte {offset}: cannot decode {message}: {source}")]
    Decode {
        path: String,
        offset: u64,
        message: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{path}: at byte {offset}: {message} lacks required field {field}")]
    MissingRequired {
        path: String,
        offset: u64,
        message: String,
        field: String,
    },
    #[error("{path}: cannot encode {message}: {what}")]
    Encode {
        path: String,
        message: String,
        what: String,
    },
    #[error("{path}: {what}")]
    Json { path: String, what: String },
    #[error("no image kind {0}")]
    UnknownKind(String),
    #[error("protobuf message {0} is not in the embedded descriptor set")]
    UnknownMessage(String),
}

impl Error {
    pub(crate) fn io(path: &str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn format(path: &str, offset: u64, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.to_string(),
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn json(path: &str, what: impl Into<String>) -> Self {
        Error::Json {
            path: path.to_string(),
            what: what.into(),
        }
    }
}
