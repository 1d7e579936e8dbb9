//! Checks proto2 `required` fields on the wire, which prost does not do. Walks the encoded
//! message with its descriptor, recursing into message fields.

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost_reflect::{Cardinality, Kind, MessageDescriptor};

/// `Ok` when every required field (also in nested messages) is present, else the dotted path
/// of the first missing one, e.g. `tc.comm`. Malformed bytes are left to the real decoder.
pub fn check_required(desc: &MessageDescriptor, bytes: &[u8]) -> Result<(), String> {
    check(desc, bytes, 0)
}

fn check(desc: &MessageDescriptor, mut buf: &[u8], depth: u32) -> Result<(), String> {
    if depth > 100 {
        return Ok(());
    }
    let mut seen: Vec<u32> = Vec::new();
    while buf.has_remaining() {
        let Ok((number, wire)) = decode_key(&mut buf) else {
            return Ok(());
        };
        seen.push(number);
        let field = desc.get_field(number);
        match wire {
            WireType::Varint => {
                if decode_varint(&mut buf).is_err() {
                    return Ok(());
                }
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let size = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                if buf.remaining() < size {
                    return Ok(());
                }
                buf.advance(size);
            }
            WireType::LengthDelimited => {
                let Ok(len) = decode_varint(&mut buf) else {
                    return Ok(());
                };
                let Ok(len) = usize::try_from(len) else {
                    return Ok(());
                };
                if buf.remaining() < len {
                    return Ok(());
                }
                let (inner, rest) = buf.split_at(len);
                buf = rest;
                if let Some(Kind::Message(sub)) = field.as_ref().map(|f| f.kind()) {
                    check(&sub, inner, depth + 1).map_err(|missing| {
                        format!("{}.{missing}", field.as_ref().map_or("", |f| f.name()))
                    })?;
                }
            }
            WireType::StartGroup | WireType::EndGroup => return Ok(()),
        }
    }
    for field in desc.fields() {
        if field.cardinality() == Cardinality::Required && !seen.contains(&field.number()) {
            return Err(field.name().to_string());
        }
    }
    Ok(())
}
