//! The embedded descriptor set of all image messages, for prost-reflect.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::Error;

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/criu_descriptor.bin"));

/// All messages of CRIU's images (package `criu`), with the custom crit field options.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    // The set is produced by build.rs from our own .proto files, so decoding it cannot fail
    // unless the build itself is broken.
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("embedded descriptor set"))
}

/// The descriptor of a message by its name, with or without the `criu.` package prefix.
pub fn message_descriptor(name: &str) -> Result<MessageDescriptor, Error> {
    let full = if name.contains('.') {
        name.to_string()
    } else {
        format!("criu.{name}")
    };
    pool()
        .get_message_by_name(&full)
        .ok_or(Error::UnknownMessage(full))
}
