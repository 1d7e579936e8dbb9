//! crit's JSON object -> protobuf message (pycriu's dict2pb).

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde_json::Value as Json;

use super::opts::field_opts;
use super::render;
use super::text::{b64_decode, parse_int, qp_decode};

/// Builds a message from a JSON object; keys that are not fields (such as "extra") are
/// ignored, as crit ignores them. Errors name the field path.
pub fn json_to_message(desc: &MessageDescriptor, json: &Json) -> Result<DynamicMessage, String> {
    let Json::Object(map) = json else {
        return Err(format!("{}: expected a JSON object", desc.name()));
    };
    let mut msg = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        let Some(value) = map.get(field.name()) else {
            continue;
        };
        let converted = if field.is_list() {
            list_from_json(&field, value)
        } else {
            single_from_json(&field, value)
        };
        let converted = converted.map_err(|e| format!("{}: {e}", field.name()))?;
        msg.try_set_field(&field, converted)
            .map_err(|e| format!("{}: {e}", field.name()))?;
    }
    Ok(msg)
}

fn list_from_json(field: &FieldDescriptor, value: &Json) -> Result<Value, String> {
    let Json::Array(items) = value else {
        return Err("expected a JSON list".into());
    };
    if field_opts(field).ipadd {
        if let Some(Json::String(text)) = items.first() {
            let words = render::ip_from_text(text)?;
            return Ok(Value::List(words.into_iter().map(Value::U32).collect()));
        }
    }
    let values: Result<Vec<Value>, String> = items
        .iter()
        .map(|item| single_from_json(field, item))
        .collect();
    Ok(Value::List(values?))
}

fn single_from_json(field: &FieldDescriptor, value: &Json) -> Result<Value, String> {
    let opts = field_opts(field);
    match field.kind() {
        Kind::Message(sub) => json_to_message(&sub, value).map(Value::Message),
        Kind::Bytes => {
            let Json::String(text) = value else {
                return Err("expected a string".into());
            };
            let bytes = if opts.conv.as_deref() == Some("unix_name") {
                qp_decode(text)
            } else {
                b64_decode(text)?
            };
            Ok(Value::Bytes(bytes.into()))
        }
        Kind::String => match value {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err("expected a string".into()),
        },
        Kind::Bool => Ok(Value::Bool(match value {
            Json::Bool(b) => *b,
            Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Json::String(s) => !s.is_empty(),
            _ => return Err("expected a boolean".into()),
        })),
        Kind::Enum(e) => match value {
            Json::String(name) => e
                .get_value_by_name(name)
                .map(|v| Value::EnumNumber(v.number()))
                .ok_or_else(|| format!("{name:?} is not a value of enum {}", e.name())),
            Json::Number(n) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .map(Value::EnumNumber)
                .ok_or_else(|| format!("bad enum number {n}")),
            _ => Err("expected an enum name".into()),
        },
        Kind::Double => value
            .as_f64()
            .map(Value::F64)
            .ok_or_else(|| "expected a number".into()),
        Kind::Float => value
            .as_f64()
            .map(|v| Value::F32(v as f32))
            .ok_or_else(|| "expected a number".into()),
        int_kind => {
            let v = int_from_json(field, value)?;
            int_value(&int_kind, v).ok_or_else(|| format!("{v} is out of range for {int_kind:?}"))
        }
    }
}

fn int_from_json(field: &FieldDescriptor, value: &Json) -> Result<i128, String> {
    let opts = field_opts(field);
    match value {
        Json::Number(n) => {
            if let Some(v) = n.as_u64() {
                Ok(i128::from(v))
            } else if let Some(v) = n.as_i64() {
                Ok(i128::from(v))
            } else {
                // Python's int() of a float truncates toward zero.
                n.as_f64()
                    .map(|f| f.trunc() as i128)
                    .ok_or_else(|| format!("bad number {n}"))
            }
        }
        Json::Bool(b) => Ok(i128::from(*b)),
        Json::String(text) => {
            if opts.dev {
                return render::dev_from_text(text, opts.odev);
            }
            if let Some(map) = &opts.flags {
                if let Some(parsed) = render::flags_from_text(map, text) {
                    return parsed;
                }
            }
            if let Some(dict) = &opts.dict {
                if let Some(v) = render::dict_from_text(dict, field.name(), text) {
                    return Ok(v);
                }
            }
            parse_int(text).ok_or_else(|| format!("{text:?} is not an integer"))
        }
        _ => Err("expected an integer".into()),
    }
}

fn int_value(kind: &Kind, v: i128) -> Option<Value> {
    Some(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(i32::try_from(v).ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(i64::try_from(v).ok()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(v).ok()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::try_from(v).ok()?),
        _ => return None,
    })
}
