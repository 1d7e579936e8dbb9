//! Whole images <-> crit's JSON: `{"magic": NAME, "entries": [...]}`, with the payloads that
//! follow entries of some kinds rendered under "extra" the way crit renders them.

use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::{json, Value as Json};

use super::from_json::json_to_message;
use super::text::{b64_decode, b64_encode};
use super::to_json::{decode_to_json, message_to_json};
use crate::{
    check_required, magic_by_name, magic_name, message_descriptor, Error, ImageKind, ImageReader,
    Payload, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC,
};

/// How `decode_image` renders.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// crit's `--pretty`: hex, flags, devices, addresses and dictionary names as strings.
    pub pretty: bool,
    /// crit's `show --nopl`: payloads are replaced by their size.
    pub no_payload: bool,
}

type Reader<'a> = ImageReader<&'a [u8]>;

/// The crit name of the image and its kind, with a reader positioned after the magic(s).
fn open<'a>(
    path: &str,
    data: &'a [u8],
) -> Result<(&'static str, &'static ImageKind, Reader<'a>), Error> {
    let word = |at: usize| -> Result<u32, Error> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| Error::format(path, at as u64, "truncated: no magic number"))
    };
    let mut at = 0;
    let mut magic = word(0)?;
    if magic == IMG_COMMON_MAGIC || magic == IMG_SERVICE_MAGIC {
        at = 4;
        magic = word(4)?;
    }
    let name = magic_name(magic).ok_or_else(|| {
        Error::format(
            path,
            at as u64,
            format!("unknown magic {magic:#x}; is this a raw image such as pages-N.img?"),
        )
    })?;
    let kind = ImageKind::by_name(name)
        .filter(|k| k.payload != Payload::Raw)
        .ok_or_else(|| {
            Error::format(
                path,
                at as u64,
                format!("no handler for images with magic {name}"),
            )
        })?;
    let reader = ImageReader::after_head(path, kind, &data[at + 4..], (at + 4) as u64);
    Ok((name, kind, reader))
}

/// Renders a binary image as crit's JSON value.
pub fn decode_image(path: &str, data: &[u8], opts: DecodeOptions) -> Result<Json, Error> {
    let (name, kind, mut reader) = open(path, data)?;
    let entries = match kind.payload {
        Payload::Pagemap => decode_pagemap(&mut reader, opts)?,
        Payload::GhostFile => decode_ghost(&mut reader, opts)?,
        _ => decode_entries(&mut reader, kind, opts)?,
    };
    Ok(json!({ "magic": name, "entries": entries }))
}

/// crit's `info`: the kind's name and its number of entries.
pub fn image_info(path: &str, data: &[u8]) -> Result<Json, Error> {
    let (name, kind, _) = open(path, data)?;
    let decoded = decode_image(
        path,
        data,
        DecodeOptions {
            pretty: false,
            no_payload: true,
        },
    )?;
    let mut count = decoded["entries"].as_array().map_or(0, Vec::len);
    if kind.payload == Payload::Pagemap {
        // The head is not counted.
        count = count.saturating_sub(1);
    }
    Ok(json!({ "magic": name, "count": count }))
}

fn read_message(
    reader: &mut Reader<'_>,
    desc: &MessageDescriptor,
    pretty: bool,
) -> Result<Option<(DynamicMessage, Json)>, Error> {
    let Some((at, bytes)) = reader.read_entry_bytes()? else {
        return Ok(None);
    };
    let path = reader.path().to_string();
    decode_to_json(desc, &bytes, pretty, &path, at).map(Some)
}

fn decode_entries(
    reader: &mut Reader<'_>,
    kind: &ImageKind,
    opts: DecodeOptions,
) -> Result<Vec<Json>, Error> {
    let desc = message_descriptor(kind.message)?;
    let mut entries = Vec::new();
    while let Some((msg, mut entry)) = read_message(reader, &desc, opts.pretty)? {
        if let Some(extra) = read_extra(reader, kind.payload, &msg, opts.no_payload)? {
            if let Json::Object(map) = &mut entry {
                map.insert("extra".into(), extra);
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn decode_pagemap(reader: &mut Reader<'_>, opts: DecodeOptions) -> Result<Vec<Json>, Error> {
    let head = message_descriptor("pagemap_head")?;
    let entry = message_descriptor("pagemap_entry")?;
    let mut entries = Vec::new();
    while let Some((_, json)) = read_message(
        reader,
        if entries.is_empty() { &head } else { &entry },
        opts.pretty,
    )? {
        entries.push(json);
    }
    Ok(entries)
}

fn decode_ghost(reader: &mut Reader<'_>, opts: DecodeOptions) -> Result<Vec<Json>, Error> {
    let file = message_descriptor("ghost_file_entry")?;
    let chunk = message_descriptor("ghost_chunk_entry")?;
    let at = reader.offset();
    let (msg, mut first) = read_message(reader, &file, opts.pretty)?
        .ok_or_else(|| Error::format(reader.path(), at, "ghost file image has no entry"))?;
    let mut entries = Vec::new();
    if field_u64(&msg, "chunks") != 0 {
        entries.push(first);
        while let Some((msg, mut entry)) = read_message(reader, &chunk, opts.pretty)? {
            let data = reader.read_payload(field_u64(&msg, "len"))?;
            if !opts.no_payload {
                insert_extra(&mut entry, Json::String(b64_encode(&data)));
            }
            entries.push(entry);
        }
    } else {
        let data = reader.read_to_end()?;
        if !opts.no_payload {
            insert_extra(&mut first, Json::String(b64_encode(&data)));
        }
        entries.push(first);
    }
    Ok(entries)
}

fn insert_extra(entry: &mut Json, extra: Json) {
    if let Json::Object(map) = entry {
        map.insert("extra".into(), extra);
    }
}

/// An integer (or bool) field of a decoded message, 0 when unset.
fn field_u64(msg: &DynamicMessage, name: &str) -> u64 {
    match msg.get_field_by_name(name).as_deref() {
        Some(prost_reflect::Value::U32(v)) => u64::from(*v),
        Some(prost_reflect::Value::U64(v)) => *v,
        Some(prost_reflect::Value::Bool(v)) => u64::from(*v),
        _ => 0,
    }
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// crit's human-readable size for `--nopl`.
fn human_size(size: u64) -> String {
    let mut num = size as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{num:.0}{unit}B")
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

fn read_extra(
    reader: &mut Reader<'_>,
    payload: Payload,
    msg: &DynamicMessage,
    no_payload: bool,
) -> Result<Option<Json>, Error> {
    let blob = |reader: &mut Reader<'_>, len: u64| -> Result<Json, Error> {
        let data = reader.read_payload(len)?;
        Ok(if no_payload {
            Json::String(format!("... <{}>", human_size(len)))
        } else {
            Json::String(b64_encode(&data))
        })
    };
    Ok(Some(match payload {
        Payload::None | Payload::Raw | Payload::Pagemap | Payload::GhostFile => return Ok(None),
        Payload::PipeData => blob(reader, field_u64(msg, "bytes"))?,
        Payload::SkQueue => blob(reader, field_u64(msg, "length"))?,
        Payload::BpfMapData => blob(
            reader,
            field_u64(msg, "keys_bytes") + field_u64(msg, "values_bytes"),
        )?,
        Payload::TcpStream => {
            let (inq_len, outq_len) = (field_u64(msg, "inq_len"), field_u64(msg, "outq_len"));
            let inq = reader.read_payload(inq_len)?;
            let outq = reader.read_payload(outq_len)?;
            if no_payload {
                Json::String(format!("... <{}>", human_size(inq_len + outq_len)))
            } else {
                json!({ "inq": b64_encode(&inq), "outq": b64_encode(&outq) })
            }
        }
        Payload::IpcShm => {
            if field_u64(msg, "in_pagemaps") != 0 {
                return Ok(None);
            }
            let size = field_u64(msg, "size");
            let data = reader.read_payload(size)?;
            reader.read_payload(round_up(size, 4) - size)?;
            if no_payload {
                Json::String(format!("... <{}>", human_size(size)))
            } else {
                Json::String(b64_encode(&data))
            }
        }
        Payload::IpcSem => {
            let size = field_u64(msg, "nsems") * 2;
            let data = reader.read_payload(size)?;
            reader.read_payload(round_up(size, 8) - size)?;
            if no_payload {
                Json::String(format!("... <{}>", human_size(size)))
            } else {
                Json::Array(
                    data.chunks(2)
                        .map(|c| Json::from(u16::from_ne_bytes([c[0], c[1]])))
                        .collect(),
                )
            }
        }
        Payload::IpcMsg => {
            let desc = message_descriptor("ipc_msg")?;
            let mut items = Vec::new();
            let mut total = 0u64;
            for _ in 0..field_u64(msg, "qnum") {
                let Some((at, bytes)) = reader.read_entry_bytes()? else {
                    break;
                };
                let path = reader.path().to_string();
                let (one, rendered) = decode_to_json(&desc, &bytes, false, &path, at)?;
                let msize = field_u64(&one, "msize");
                let data = reader.read_payload(msize)?;
                reader.read_payload(round_up(msize, 8) - msize)?;
                total += bytes.len() as u64 + msize;
                items.push(rendered);
                items.push(Json::String(b64_encode(&data)));
            }
            if no_payload {
                Json::String(format!("... <{}>", human_size(total)))
            } else {
                Json::Array(items)
            }
        }
    }))
}

/// Builds the binary image from crit's JSON value.
pub fn encode_image(path: &str, image: &Json) -> Result<Vec<u8>, Error> {
    let name = image
        .get("magic")
        .and_then(Json::as_str)
        .ok_or_else(|| Error::json(path, "no \"magic\" string"))?;
    let magic =
        magic_by_name(name).ok_or_else(|| Error::json(path, format!("unknown magic {name:?}")))?;
    let kind = ImageKind::by_name(name)
        .filter(|k| k.payload != Payload::Raw)
        .ok_or_else(|| Error::json(path, format!("no handler for images with magic {name}")))?;
    let entries: &[Json] = match image.get("entries") {
        Some(Json::Array(entries)) => entries,
        Some(_) => return Err(Error::json(path, "\"entries\" is not a list")),
        None => &[],
    };
    let mut out = Vec::new();
    if name != "INVENTORY" {
        let head = if matches!(name, "STATS" | "IRMAP_CACHE") {
            IMG_SERVICE_MAGIC
        } else {
            IMG_COMMON_MAGIC
        };
        out.extend_from_slice(&head.to_le_bytes());
    }
    out.extend_from_slice(&magic.to_le_bytes());
    let mut enc = Encoder { path, out };
    match kind.payload {
        Payload::Pagemap => {
            for (i, entry) in entries.iter().enumerate() {
                enc.message(
                    if i == 0 {
                        "pagemap_head"
                    } else {
                        "pagemap_entry"
                    },
                    entry,
                    i,
                )?;
            }
        }
        Payload::GhostFile => enc.ghost(entries)?,
        payload => {
            for (i, entry) in entries.iter().enumerate() {
                let msg = enc.message(kind.message, entry, i)?;
                match entry.get("extra") {
                    Some(extra) if truthy(extra) => enc.extra(payload, &msg, extra, i)?,
                    _ => {}
                }
            }
        }
    }
    Ok(enc.out)
}

/// Python's truth value of a JSON value, as crit tests "extra".
fn truthy(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

struct Encoder<'a> {
    path: &'a str,
    out: Vec<u8>,
}

impl Encoder<'_> {
    fn fail(&self, index: usize, what: impl std::fmt::Display) -> Error {
        Error::json(self.path, format!("entry {index}: {what}"))
    }

    /// Encodes and frames one message; gives it back for its payload's lengths.
    fn message(
        &mut self,
        message: &str,
        json: &Json,
        index: usize,
    ) -> Result<DynamicMessage, Error> {
        let desc = message_descriptor(message)?;
        let msg = json_to_message(&desc, json).map_err(|e| self.fail(index, e))?;
        let bytes = prost::Message::encode_to_vec(&msg);
        if let Err(field) = check_required(&desc, &bytes) {
            return Err(Error::Encode {
                path: self.path.to_string(),
                message: desc.full_name().to_string(),
                what: format!("entry {index} lacks required field {field}"),
            });
        }
        self.out
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&bytes);
        Ok(msg)
    }

    fn base64(&self, value: &Json, index: usize) -> Result<Vec<u8>, Error> {
        let text = value
            .as_str()
            .ok_or_else(|| self.fail(index, "extra is not a base64 string"))?;
        b64_decode(text).map_err(|e| self.fail(index, e))
    }

    fn pad_to(&mut self, written: u64, to: u64) {
        let pad = round_up(written, to) - written;
        self.out.extend(std::iter::repeat_n(0u8, pad as usize));
    }

    fn extra(
        &mut self,
        payload: Payload,
        msg: &DynamicMessage,
        extra: &Json,
        index: usize,
    ) -> Result<(), Error> {
        match payload {
            Payload::PipeData | Payload::SkQueue | Payload::BpfMapData => {
                let data = self.base64(extra, index)?;
                self.out.extend_from_slice(&data);
            }
            Payload::TcpStream => {
                for queue in ["inq", "outq"] {
                    let part = extra
                        .get(queue)
                        .ok_or_else(|| self.fail(index, format!("extra has no {queue}")))?;
                    let data = self.base64(part, index)?;
                    self.out.extend_from_slice(&data);
                }
            }
            Payload::IpcShm => {
                let size = field_u64(msg, "size");
                let data = self.base64(extra, index)?;
                let keep = data.len().min(size as usize);
                self.out.extend_from_slice(&data[..keep]);
                self.pad_to(size, 4);
            }
            Payload::IpcSem => {
                let nsems = field_u64(msg, "nsems");
                let values = extra
                    .as_array()
                    .ok_or_else(|| self.fail(index, "extra is not a list"))?;
                if values.len() as u64 != nsems {
                    return Err(self.fail(index, "number of semaphores mismatch"));
                }
                for value in values {
                    let v = value
                        .as_u64()
                        .and_then(|v| u16::try_from(v).ok())
                        .ok_or_else(|| self.fail(index, format!("bad semaphore value {value}")))?;
                    self.out.extend_from_slice(&v.to_ne_bytes());
                }
                self.pad_to(nsems * 2, 8);
            }
            Payload::IpcMsg => {
                let items = extra
                    .as_array()
                    .ok_or_else(|| self.fail(index, "extra is not a list"))?;
                for pair in items.chunks(2) {
                    let one = self.message("ipc_msg", &pair[0], index)?;
                    let msize = field_u64(&one, "msize");
                    let data = match pair.get(1) {
                        Some(text) => self.base64(text, index)?,
                        None => return Err(self.fail(index, "queued message without its data")),
                    };
                    let keep = data.len().min(msize as usize);
                    self.out.extend_from_slice(&data[..keep]);
                    self.pad_to(msize, 8);
                }
            }
            Payload::None | Payload::Raw | Payload::Pagemap | Payload::GhostFile => {}
        }
        Ok(())
    }

    fn ghost(&mut self, entries: &[Json]) -> Result<(), Error> {
        let Some(first) = entries.first() else {
            return Err(self.fail(0, "a ghost file image needs an entry"));
        };
        let msg = self.message("ghost_file_entry", first, 0)?;
        if field_u64(&msg, "chunks") != 0 {
            for (i, entry) in entries.iter().enumerate().skip(1) {
                self.message("ghost_chunk_entry", entry, i)?;
                let extra = entry
                    .get("extra")
                    .ok_or_else(|| self.fail(i, "chunk without extra"))?;
                let data = self.base64(extra, i)?;
                self.out.extend_from_slice(&data);
            }
        } else {
            let extra = first
                .get("extra")
                .ok_or_else(|| self.fail(0, "ghost file without extra"))?;
            let data = self.base64(extra, 0)?;
            self.out.extend_from_slice(&data);
        }
        Ok(())
    }
}

/// A typed message as crit's JSON object (handy for tests and tools).
pub fn message_json<M: prost::Message + prost::Name>(msg: &M, pretty: bool) -> Result<Json, Error> {
    let desc = message_descriptor(&M::full_name())?;
    let dynamic =
        DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()).map_err(|source| {
            Error::Decode {
                path: "<memory>".into(),
                offset: 0,
                message: M::full_name(),
                source,
            }
        })?;
    Ok(message_to_json(&dynamic, pretty, false))
}
