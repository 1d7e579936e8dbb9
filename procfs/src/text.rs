//! Small helpers shared by the parsers: lines, fields, numbers and escapes, all on bytes
//! (paths in /proc files need not be UTF-8).

use crate::error::ParseError;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Non-empty lines with their 1-based numbers.
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.is_empty())
}

/// Whitespace-separated fields of a line.
pub fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

pub fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[start..]
}

pub fn trim(s: &[u8]) -> &[u8] {
    let mut s = trim_start(s);
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

/// Shown in messages: the bytes as text, quoted.
pub fn show(s: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(s))
}

pub fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

pub fn to_path(s: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(s.to_vec()))
}

fn ascii(s: &[u8]) -> Option<&str> {
    std::str::from_utf8(s).ok()
}

/// Parse a decimal number; `what` names the field in the error.
pub fn dec<T: std::str::FromStr>(s: &[u8], line: usize, what: &str) -> Result<T, ParseError> {
    ascii(s)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ParseError::new(line, format!("bad {what} {}", show(s))))
}

/// Parse a number in base 16 (an optional "0x" prefix is accepted).
pub fn hex_u64(s: &[u8], line: usize, what: &str) -> Result<u64, ParseError> {
    let t = ascii(s).map(|t| t.strip_prefix("0x").unwrap_or(t));
    t.filter(|t| !t.is_empty())
        .and_then(|t| u64::from_str_radix(t, 16).ok())
        .ok_or_else(|| ParseError::new(line, format!("bad {what} {}", show(s))))
}

pub fn hex_u32(s: &[u8], line: usize, what: &str) -> Result<u32, ParseError> {
    let v = hex_u64(s, line, what)?;
    u32::try_from(v).map_err(|_| ParseError::new(line, format!("{what} {} out of range", show(s))))
}

/// Hex digits only (no prefix, no sign), as in address ranges and device numbers.
pub fn strict_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(ascii(s)?, 16).ok()
}

/// Parse a number in base 8 (as /proc prints file flags: "0100002").
pub fn oct_u32(s: &[u8], line: usize, what: &str) -> Result<u32, ParseError> {
    ascii(s)
        .filter(|t| !t.is_empty())
        .and_then(|t| u32::from_str_radix(t, 8).ok())
        .ok_or_else(|| ParseError::new(line, format!("bad {what} {}", show(s))))
}

/// Decode the kernel's `\ooo` octal escapes (mountinfo writes space as `\040`,
/// tab as `\011`, newline as `\012`, backslash as `\134`). Other bytes pass through.
pub fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() {
            let d = &s[i + 1..i + 4];
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Split "key: value" at the first colon; the value is trimmed.
pub fn key_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = line.iter().position(|&b| b == b':')?;
    Some((&line[..pos], trim(&line[pos + 1..])))
}

/// Pairs from a line like `tfd: 7 events: 19 pos:0 ino:40f`: a token ending in ':' takes the
/// next token as its value, a token "k:v" is split at its first colon, other tokens are skipped.
pub fn tagged_pairs(line: &[u8]) -> Vec<(&[u8], &[u8])> {
    let toks: Vec<&[u8]> = fields(line).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if let Some(key) = t.strip_suffix(b":") {
            if let Some(v) = toks.get(i + 1) {
                out.push((key, *v));
                i += 2;
                continue;
            }
            out.push((key, &t[t.len()..]));
        } else if let Some(p) = t.iter().position(|&b| b == b':') {
            out.push((&t[..p], &t[p + 1..]));
        }
        i += 1;
    }
    out
}

/// Look a key up in [`tagged_pairs`] output, or fail naming the key.
pub fn need<'a>(
    pairs: &[(&[u8], &'a [u8])],
    key: &str,
    line: usize,
) -> Result<&'a [u8], ParseError> {
    pairs
        .iter()
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| *v)
        .ok_or_else(|| ParseError::new(line, format!("no {key} field")))
}

pub fn find<'a>(pairs: &[(&[u8], &'a [u8])], key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| *v)
}

/// Decode a hex string ("a7c4030000000000") into bytes.
pub fn hex_bytes(s: &[u8], line: usize, what: &str) -> Result<Vec<u8>, ParseError> {
    let bad = || ParseError::new(line, format!("bad {what} {}", show(s)));
    if !s.len().is_multiple_of(2) {
        return Err(bad());
    }
    s.chunks(2)
        .map(|c| {
            ascii(c)
                .and_then(|t| u8::from_str_radix(t, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_decode() {
        assert_eq!(unescape_octal(br"/a\040b\011c\134d\012"), b"/a b\tc\\d\n");
        // Not an escape: too short, or not octal digits.
        assert_eq!(unescape_octal(br"x\04"), br"x\04");
        assert_eq!(unescape_octal(br"x\089"), br"x\089");
        assert_eq!(unescape_octal(br"\\"), br"\\");
    }

    #[test]
    fn tagged_pairs_handle_both_spacings() {
        let p = tagged_pairs(b"tfd:        7 events: 80000019 data:   deadbeef  pos:0 ino:40f");
        assert_eq!(need(&p, "tfd", 1).unwrap(), b"7");
        assert_eq!(need(&p, "data", 1).unwrap(), b"deadbeef");
        assert_eq!(need(&p, "pos", 1).unwrap(), b"0");
        assert_eq!(need(&p, "ino", 1).unwrap(), b"40f");
        assert_eq!(
            need(&p, "sdev", 4).unwrap_err().to_string(),
            "line 4: no sdev field"
        );
    }

    #[test]
    fn numbers_reject_junk() {
        assert_eq!(hex_u64(b"0x1f", 1, "x").unwrap(), 31);
        assert!(hex_u64(b"", 1, "x").is_err());
        assert!(hex_u64(b"zz", 1, "x").is_err());
        assert_eq!(oct_u32(b"0100002", 1, "flags").unwrap(), 0o100002);
        assert!(oct_u32(b"9", 1, "flags").is_err());
        assert!(dec::<i32>(b"-1", 1, "pid").is_ok());
        assert_eq!(
            dec::<u32>(b"-1", 2, "pid").unwrap_err().to_string(),
            "line 2: bad pid \"-1\""
        );
        assert_eq!(hex_bytes(b"a7c4", 1, "h").unwrap(), vec![0xa7, 0xc4]);
        assert!(hex_bytes(b"a7c", 1, "h").is_err());
    }
}
