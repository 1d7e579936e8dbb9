//! `/proc/PID/uid_map` and `gid_map`: "FIRST LOWER_FIRST COUNT" lines, how ids inside the
//! task's user namespace map to the namespace of the reader.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, fields, lines};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdExtent {
    /// First id inside the namespace.
    pub first: u32,
    /// The id it maps to outside (in the reader's namespace).
    pub lower_first: u32,
    pub count: u32,
}

/// One task's map of user or group ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(pub Vec<IdExtent>);

impl IdMap {
    /// The id inside the namespace for `outside`, the reader's view of it; `None` if unmapped.
    pub fn inside(&self, outside: u32) -> Option<u32> {
        self.0.iter().find_map(|e| {
            let off = outside.checked_sub(e.lower_first)?;
            (off < e.count).then(|| e.first + off)
        })
    }
}

pub fn parse_id_map(text: &[u8]) -> Result<IdMap, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(text) {
        let f: Vec<&[u8]> = fields(line).collect();
        let [first, lower, count] = f[..] else {
            return Err(ParseError::new(n, "an id map line needs three numbers"));
        };
        out.push(IdExtent {
            first: text::dec(first, n, "first id")?,
            lower_first: text::dec(lower, n, "lower first id")?,
            count: text::dec(count, n, "id count")?,
        });
    }
    Ok(IdMap(out))
}

/// `uid_map` (`gid: false`) or `gid_map` of `pid`.
pub fn read_id_map(pid: i32, gid: bool) -> Result<IdMap> {
    let name = if gid { "gid_map" } else { "uid_map" };
    read_parsed(pid_path(pid, name), parse_id_map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_translate_outside_ids_to_inside_ones() {
        let m = parse_id_map(b"         0     100000      65536\n 70000 1000 1\n").unwrap();
        assert_eq!(m.inside(100000), Some(0));
        assert_eq!(m.inside(100005), Some(5));
        assert_eq!(m.inside(1000), Some(70000));
        assert_eq!(m.inside(0), None);
        let host = read_id_map(std::process::id() as i32, false).unwrap();
        assert_eq!(host.inside(12345), Some(12345));
        assert!(parse_id_map(b"0 1\n").is_err());
    }
}
