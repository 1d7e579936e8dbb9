//! crit's JSON form of images: `{"magic": "CORE", "entries": [...]}`, produced and read the
//! way pycriu does (field options decide hex, flags, devices, addresses; bytes are base64).

mod from_json;
mod image;
pub mod opts;
mod pyjson;
mod render;
mod text;
mod to_json;

pub use image::{decode_image, encode_image, image_info, message_json, DecodeOptions};
pub use pyjson::to_python_json;
