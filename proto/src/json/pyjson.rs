//! Writes JSON the way Python's `json.dump` does with its defaults (`ensure_ascii`), compact
//! (`indent=None`: ", " and ": " separators) or indented, so our output matches crit's byte
//! for byte.

use serde_json::Value;

/// Python-style JSON text of `value`; `indent` is the number of spaces per level, if any.
pub fn to_python_json(value: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_value(value, indent, 0, &mut out);
    out
}

fn write_value(value: &Value, indent: Option<usize>, level: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(i, indent, level + 1, out);
                write_value(item, indent, level + 1, out);
            }
            close(indent, level, out);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                separator(i, indent, level + 1, out);
                write_string(key, out);
                out.push_str(": ");
                write_value(item, indent, level + 1, out);
            }
            close(indent, level, out);
            out.push('}');
        }
    }
}

fn separator(index: usize, indent: Option<usize>, level: usize, out: &mut String) {
    match indent {
        None if index > 0 => out.push_str(", "),
        None => {}
        Some(width) => {
            if index > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&" ".repeat(width * level));
        }
    }
}

fn close(indent: Option<usize>, level: usize, out: &mut String) {
    if let Some(width) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(width * level));
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_matches_python() {
        let v = json!({"magic": "CORE", "entries": [{"a": 1, "b": [true, "x\u{e9}\u{1F600}\n"]}, {}], "e": []});
        assert_eq!(
            to_python_json(&v, None),
            r#"{"magic": "CORE", "entries": [{"a": 1, "b": [true, "x\u00e9\ud83d\ude00\n"]}, {}], "e": []}"#
        );
    }

    #[test]
    fn indented_matches_python() {
        let v = json!({"a": [1, 2], "b": {}, "c": {"d": null}});
        assert_eq!(
            to_python_json(&v, Some(4)),
            "{\n    \"a\": [\n        1,\n        2\n    ],\n    \"b\": {},\n    \"c\": {\n        \"d\": null\n    }\n}"
        );
    }
}
