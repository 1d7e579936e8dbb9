//! Python's text codecs as crit uses them: `base64.encodebytes`/`decodebytes`, `quopri`
//! (for unix socket names) and `int(s, 0)`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// `base64.encodebytes`: a newline after every 76 characters and at the end.
pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(57) {
        out.push_str(&STANDARD.encode(chunk));
        out.push('\n');
    }
    out
}

/// `base64.decodebytes`: characters outside the alphabet (newlines) are skipped.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    // Python stops at the first complete padded quantum; trailing garbage after it is ignored.
    let clean = match clean.find('=') {
        Some(pos) => {
            let end = pos.div_ceil(4) * 4;
            clean[..end.min(clean.len())].to_string()
        }
        None => clean,
    };
    STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| format!("bad base64: {e}"))
}

const QP_LINE: usize = 76;

/// `quopri.encodestring` (binascii.b2a_qp with quotetabs=False, istext=True, header=False).
pub fn qp_encode(data: &[u8]) -> String {
    let crlf = data
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && data[i - 1] == b'\r');
    let mut out: Vec<u8> = Vec::new();
    let mut linelen = 0usize;
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        let next = data.get(i + 1).copied();
        let at_end = i + 1 == data.len();
        let must_quote = c > 126
            || c == b'='
            || (c == b'.' && linelen == 0 && (at_end || matches!(next, Some(b'\n' | b'\r' | 0))))
            || ((c == b'\t' || c == b' ') && at_end)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if must_quote {
            if linelen + 3 >= QP_LINE {
                out.extend_from_slice(b"=\n");
                linelen = 0;
            }
            out.extend_from_slice(format!("={c:02X}").as_bytes());
            linelen += 3;
            i += 1;
        } else if c == b'\n' || (c == b'\r' && next == Some(b'\n')) {
            linelen = 0;
            // Whitespace at the end of a line would be lost in transport: quote it.
            if let Some(&last) = out.last() {
                if last == b' ' || last == b'\t' {
                    out.pop();
                    out.extend_from_slice(format!("={last:02X}").as_bytes());
                }
            }
            if crlf {
                out.push(b'\r');
            }
            out.push(b'\n');
            i += if c == b'\r' { 2 } else { 1 };
        } else {
            if !at_end && next != Some(b'\n') && linelen + 1 >= QP_LINE {
                out.extend_from_slice(b"=\n");
                linelen = 0;
            }
            linelen += 1;
            out.push(c);
            i += 1;
        }
    }
    // Every byte pushed is ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// `quopri.decodestring` (binascii.a2b_qp, header=False).
pub fn qp_decode(text: &str) -> Vec<u8> {
    let data = text.as_bytes();
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] != b'=' {
            out.push(data[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i >= data.len() {
            break;
        }
        if data[i] == b'\n' || data[i] == b'\r' {
            while i < data.len() && data[i] != b'\n' {
                i += 1;
            }
            if i < data.len() {
                i += 1;
            }
        } else if data[i] == b'=' {
            out.push(b'=');
            i += 1;
        } else if i + 1 < data.len()
            && data[i].is_ascii_hexdigit()
            && data[i + 1].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&data[i..i + 2]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 2;
        } else {
            out.push(b'=');
        }
    }
    out
}

/// Python's `int(text, 0)`: optional sign, 0x/0o/0b prefixes, `_` between digits.
pub fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else {
        // Decimal with a leading zero is only allowed for zero itself.
        if lower.starts_with('0') && lower.chars().any(|c| c != '0' && c != '_') {
            return None;
        }
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let value = i128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lines_like_python() {
        assert_eq!(b64_encode(b""), "");
        assert_eq!(b64_encode(b"abc"), "YWJj\n");
        let long = b64_encode(&[b'x'; 100]);
        assert_eq!(long.lines().next().map(str::len), Some(76));
        assert_eq!(long.matches('\n').count(), 2);
        assert_eq!(b64_decode(&long).unwrap(), vec![b'x'; 100]);
    }

    #[test]
    fn quopri_like_python() {
        // Reference strings produced by CPython 3.11's quopri.encodestring.
        assert_eq!(qp_encode(b"\x00abc =\t\n x "), "=00abc =3D=09\n x=20");
        assert_eq!(qp_encode(b"/tmp/sock"), "/tmp/sock");
        assert_eq!(qp_encode(b""), "");
        let long = vec![b'a'; 100];
        let enc = qp_encode(&long);
        assert_eq!(enc, format!("{}=\n{}", "a".repeat(75), "a".repeat(25)));
        for sample in [
            &b"\x00abc =\t\n x "[..],
            &long,
            b"\xff\xfe.\n.",
            b"a\r\nb \r\n",
        ] {
            assert_eq!(qp_decode(&qp_encode(sample)), sample);
        }
    }

    #[test]
    fn python_int_parsing() {
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("-0x5"), Some(-5));
        assert_eq!(parse_int("12"), Some(12));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("017"), None);
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("zz"), None);
    }
}
