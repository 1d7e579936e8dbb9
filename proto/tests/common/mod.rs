//! Sample images of every kind, with every field of every message set, for round-trip tests
//! and for comparison with upstream crit.

#![allow(dead_code)]

pub mod upstream;

use criu_proto::json::opts::field_opts;
use criu_proto::{message_descriptor, ImageKind, ImageWriter, Payload};
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

/// A message with every field set to a value that exercises crit's renderings.
pub fn filled(name: &str, seed: u32) -> DynamicMessage {
    fill(&message_descriptor(name).unwrap(), seed, 0)
}

fn fill(desc: &MessageDescriptor, seed: u32, depth: u32) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        if let Some(value) = field_value(&field, seed, depth) {
            msg.set_field(&field, value);
        }
    }
    msg
}

fn field_value(field: &FieldDescriptor, seed: u32, depth: u32) -> Option<Value> {
    let opts = field_opts(field);
    if field.is_list() {
        if opts.ipadd {
            // Odd field numbers get an IPv4 address, even ones an IPv6 address.
            let words: Vec<u32> = if field.number() % 2 == 1 {
                vec![u32::from_ne_bytes([10, 0, seed as u8, 1])]
            } else {
                let v6: [u8; 16] = [
                    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, seed as u8,
                ];
                v6.chunks(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            return Some(Value::List(words.into_iter().map(Value::U32).collect()));
        }
        if matches!(field.kind(), Kind::Message(_)) && depth >= 3 {
            return None;
        }
        let items: Vec<Value> = (0..2)
            .filter_map(|i| single_value(field, seed + i, depth))
            .collect();
        return Some(Value::List(items));
    }
    single_value(field, seed, depth)
}

fn single_value(field: &FieldDescriptor, seed: u32, depth: u32) -> Option<Value> {
    let opts = field_opts(field);
    let n = field.number() as u64 * 1000 + u64::from(seed);
    let int = if opts.flags.is_some() {
        0x23 | 0x10_0000
    } else if opts.dev && opts.odev {
        // glibc makedev(259, 70000)
        (259 << 8) | (70000 & 0xff) | ((70000 & !0xff) << 12)
    } else if opts.dev {
        (8 << 20) | 3
    } else if opts.dict.is_some() {
        match field.name() {
            "task_state" => 1,
            "family" => 10,
            "type" => 1,
            "proto" => 6,
            "state" => 10,
            _ => n,
        }
    } else {
        n
    };
    Some(match field.kind() {
        Kind::Message(sub) => {
            if depth >= 4 {
                return None;
            }
            Value::Message(fill(&sub, seed, depth + 1))
        }
        Kind::Bool => Value::Bool(field.number() % 2 == 1),
        Kind::String => Value::String(format!("{}-{seed} \"q\" \u{e9}", field.name())),
        Kind::Bytes if opts.conv.is_some() => Value::Bytes(b"\0abstract=name\t".to_vec().into()),
        Kind::Bytes => Value::Bytes(
            (0..70u8)
                .map(|i| i.wrapping_mul(37).wrapping_add(seed as u8))
                .collect::<Vec<_>>()
                .into(),
        ),
        Kind::Enum(e) => Value::EnumNumber(e.values().last().map_or(0, |v| v.number())),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(int as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(if opts.hex {
            int | 0x7f00_0000_0000
        } else {
            int
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-(int as i32)),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-(int as i64) * 1_000_000),
        Kind::Float => Value::F32(1.5),
        Kind::Double => Value::F64(2.5),
    })
}

fn set_u32(msg: &mut DynamicMessage, name: &str, value: u32) {
    msg.set_field_by_name(name, Value::U32(value));
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Encodes a whole image of `kind` with two entries (and their payloads) into memory.
pub fn sample_image(kind: &ImageKind) -> Vec<u8> {
    let mut w = ImageWriter::new(kind.name, kind, Vec::new()).unwrap();
    match kind.payload {
        Payload::Raw => {}
        Payload::Pagemap => {
            w.write_entry_bytes(&filled("pagemap_head", 1).encode_to_vec())
                .unwrap();
            for seed in 1..3 {
                w.write_entry_bytes(&filled("pagemap_entry", seed).encode_to_vec())
                    .unwrap();
            }
        }
        Payload::GhostFile => {
            let mut head = filled("ghost_file_entry", 1);
            head.set_field_by_name("chunks", Value::Bool(true));
            w.write_entry_bytes(&head.encode_to_vec()).unwrap();
            for seed in 1..3 {
                let mut chunk = filled("ghost_chunk_entry", seed);
                chunk.set_field_by_name("len", Value::U64(100 + u64::from(seed)));
                w.write_entry_bytes(&chunk.encode_to_vec()).unwrap();
                w.write_payload(&data(100 + seed as usize, seed as u8))
                    .unwrap();
            }
        }
        payload => {
            for seed in 1..3u32 {
                let mut msg = filled(kind.message, seed);
                let extra = payload_for(payload, &mut msg, seed);
                w.write_entry_bytes(&msg.encode_to_vec()).unwrap();
                w.write_payload(&extra).unwrap();
            }
        }
    }
    w.finish().unwrap()
}

/// A ghost file image whose content follows its only entry (no chunks).
pub fn sample_plain_ghost() -> Vec<u8> {
    let mut w = ImageWriter::new("ghost", &ImageKind::GHOST_FILE, Vec::new()).unwrap();
    let mut head = filled("ghost_file_entry", 3);
    head.set_field_by_name("chunks", Value::Bool(false));
    w.write_entry_bytes(&head.encode_to_vec()).unwrap();
    w.write_payload(&data(300, 9)).unwrap();
    w.finish().unwrap()
}

/// Sets the length fields of `msg` and returns the payload that must follow it.
fn payload_for(payload: Payload, msg: &mut DynamicMessage, seed: u32) -> Vec<u8> {
    let len = 50 + seed as usize;
    match payload {
        Payload::PipeData => {
            set_u32(msg, "bytes", len as u32);
            data(len, 1)
        }
        Payload::SkQueue => {
            set_u32(msg, "length", len as u32);
            data(len, 2)
        }
        Payload::BpfMapData => {
            set_u32(msg, "keys_bytes", 8);
            set_u32(msg, "values_bytes", 16);
            data(24, 3)
        }
        Payload::TcpStream => {
            set_u32(msg, "inq_len", len as u32);
            set_u32(msg, "outq_len", 7);
            data(len + 7, 4)
        }
        Payload::IpcShm => {
            msg.set_field_by_name("size", Value::U64(len as u64));
            msg.set_field_by_name("in_pagemaps", Value::Bool(false));
            let mut d = data(len, 5);
            d.resize(len.div_ceil(4) * 4, 0);
            d
        }
        Payload::IpcSem => {
            set_u32(msg, "nsems", 3);
            let mut d: Vec<u8> = [7u16, 8, 65535]
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect();
            d.resize(8, 0);
            d
        }
        Payload::IpcMsg => {
            set_u32(msg, "qnum", 2);
            let mut out = Vec::new();
            for i in 0..2u32 {
                let mut one = filled("ipc_msg", seed + i);
                set_u32(&mut one, "msize", 5 + i);
                let bytes = one.encode_to_vec();
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
                let mut d = data(5 + i as usize, 6);
                d.resize(8, 0);
                out.extend_from_slice(&d);
            }
            out
        }
        Payload::None | Payload::Raw | Payload::Pagemap | Payload::GhostFile => Vec::new(),
    }
}

/// Every kind crit can handle (framed ones), one per crit name.
pub fn framed_kinds() -> Vec<&'static ImageKind> {
    let mut seen = Vec::new();
    ImageKind::ALL
        .iter()
        .filter(|k| k.payload != Payload::Raw)
        .filter(|k| {
            let new = !seen.contains(&k.name);
            seen.push(k.name);
            new
        })
        .collect()
}
