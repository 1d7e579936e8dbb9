//! CRIU's image format: protobuf messages wire-compatible with CRIU's `images/*.proto`, CRIU's
//! magic numbers and framing, and crit-style JSON.
//!
//! Typed use:
//! ```no_run
//! use criu_proto::{images::PstreeEntry, ImageKind, ImageReader};
//! # fn main() -> Result<(), criu_proto::Error> {
//! let mut img = ImageReader::open(std::path::Path::new("/tmp/dump"), &ImageKind::PSTREE, None)?;
//! while let Some(task) = img.read::<PstreeEntry>()? {
//!     println!("{}", task.pid);
//! }
//! # Ok(())
//! # }
//! ```

mod descriptor;
pub mod dump_images;
mod error;
mod framing;
pub mod json;
mod kind;
mod magic;
pub mod manifest;
pub mod pid_levels;
mod required;

/// The generated image messages (one Rust type per CRIU protobuf message).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod images {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

/// The messages of `criu service` / `criu swrk` RPC and the image streamer.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/criu.rpc.rs"));
}

pub use descriptor::{message_descriptor, pool};
pub use error::Error;
pub use framing::{create_image_file, ImageReader, ImageWriter, MAX_ENTRY_SIZE};
pub use kind::{ImageKind, Payload};
pub use magic::{magic_by_name, magic_name, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
pub use required::check_required;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
