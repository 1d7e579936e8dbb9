//! Protobuf message -> crit's JSON object (pycriu's pb2dict).

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{Map, Number, Value as Json};

use super::opts::field_opts;
use super::render;
use super::text::{b64_encode, qp_encode};
use crate::{check_required, Error};

/// Decodes `bytes` as `desc`, checking required fields, and renders it.
pub fn decode_to_json(
    desc: &MessageDescriptor,
    bytes: &[u8],
    pretty: bool,
    path: &str,
    offset: u64,
) -> Result<(DynamicMessage, Json), Error> {
    if let Err(field) = check_required(desc, bytes) {
        return Err(Error::MissingRequired {
            path: path.to_string(),
            offset,
            message: desc.full_name().to_string(),
            field,
        });
    }
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|source| Error::Decode {
        path: path.to_string(),
        offset,
        message: desc.full_name().to_string(),
        source,
    })?;
    let json = message_to_json(&msg, pretty, false);
    Ok((msg, json))
}

/// Set fields in field-number order (like protobuf's ListFields), by name.
pub fn message_to_json(msg: &DynamicMessage, pretty: bool, hex: bool) -> Json {
    let mut fields: Vec<FieldDescriptor> = msg.descriptor().fields().collect();
    fields.sort_by_key(|f| f.number());
    let mut out = Map::new();
    for field in fields {
        if !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        let rendered = match value.as_ref() {
            Value::List(items) if items.is_empty() => continue,
            Value::List(items) => list_to_json(&field, items, pretty, hex),
            single => scalar_to_json(&field, single, pretty, hex),
        };
        out.insert(field.name().to_string(), rendered);
    }
    Json::Object(out)
}

fn list_to_json(field: &FieldDescriptor, items: &[Value], pretty: bool, hex: bool) -> Json {
    if pretty && field_opts(field).ipadd {
        let words: Vec<u32> = items.iter().filter_map(Value::as_u32).collect();
        if let Some(text) = render::ip_to_text(&words) {
            return Json::Array(vec![Json::String(text)]);
        }
    }
    Json::Array(
        items
            .iter()
            .map(|item| scalar_to_json(field, item, pretty, hex))
            .collect(),
    )
}

fn scalar_to_json(field: &FieldDescriptor, value: &Value, pretty: bool, hex: bool) -> Json {
    let opts = field_opts(field);
    let hex = hex || opts.hex;
    match value {
        Value::Message(m) => message_to_json(m, pretty, hex),
        Value::Bytes(b) if opts.conv.as_deref() == Some("unix_name") => Json::String(qp_encode(b)),
        Value::Bytes(b) => Json::String(b64_encode(b)),
        Value::EnumNumber(n) => match field.kind() {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(v) => Json::String(v.name().to_string()),
                None => Json::from(*n),
            },
            _ => Json::from(*n),
        },
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::I32(v) => int_to_json(field, i128::from(*v), pretty, hex),
        Value::I64(v) => int_to_json(field, i128::from(*v), pretty, hex),
        Value::U32(v) => int_to_json(field, i128::from(*v), pretty, hex),
        Value::U64(v) => int_to_json(field, i128::from(*v), pretty, hex),
        Value::F32(v) => Number::from_f64(f64::from(*v)).map_or(Json::Null, Json::Number),
        Value::F64(v) => Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::List(items) => Json::Array(
            items
                .iter()
                .map(|i| scalar_to_json(field, i, pretty, hex))
                .collect(),
        ),
        Value::Map(_) => Json::Null,
    }
}

fn int_to_json(field: &FieldDescriptor, value: i128, pretty: bool, hex: bool) -> Json {
    if pretty {
        let opts = field_opts(field);
        if hex {
            return Json::String(render::hex(value));
        }
        if opts.dev {
            return Json::String(render::dev_to_text(value, opts.odev));
        }
        if let Some(map) = &opts.flags {
            return Json::String(
                render::flags_to_text(map, value).unwrap_or_else(|| render::hex(value)),
            );
        }
        if let Some(dict) = &opts.dict {
            if let Some(name) = render::dict_to_text(dict, field.name(), value) {
                return Json::String(name.to_string());
            }
        }
    }
    number(value)
}

fn number(value: i128) -> Json {
    if let Ok(v) = u64::try_from(value) {
        Json::from(v)
    } else if let Ok(v) = i64::try_from(value) {
        Json::from(v)
    } else {
        Json::Null
    }
}
