//! `/proc/PID/limits`: a table of resource limits, one row per RLIMIT_* in number order.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, fields, lines, show};

/// "unlimited" in the table; the same value as the kernel's RLIM_INFINITY on 64-bit.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Row names as the kernel prints them, indexed by RLIMIT_* number (x86_64).
const ROW_NAMES: [&str; 16] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// The RLIMIT_* number (for setrlimit/prlimit).
    pub resource: u32,
    /// The row's name, e.g. "Max open files".
    pub name: String,
    /// [`RLIM_INFINITY`] when "unlimited".
    pub soft: u64,
    pub hard: u64,
}

/// The RLIMIT_* number for a row name, if known.
pub fn resource_for_name(name: &str) -> Option<u32> {
    ROW_NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

pub fn parse_limits(text: impl AsRef<[u8]>) -> Result<Vec<Rlimit>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(text.as_ref()) {
        if line.starts_with(b"Limit ") {
            continue; // the header
        }
        // The name has spaces, so find the first two value columns from the left: the first
        // field that is a number or "unlimited" starts the values. Units (if any) follow.
        let toks: Vec<&[u8]> = fields(line).collect();
        let first_value = toks
            .iter()
            .position(|t| is_value(t))
            .filter(|&i| i > 0 && i + 1 < toks.len() && is_value(toks[i + 1]))
            .ok_or_else(|| {
                ParseError::new(n, format!("no soft and hard values in {}", show(line)))
            })?;
        let name = toks[..first_value]
            .iter()
            .map(|t| text::lossy(t))
            .collect::<Vec<_>>()
            .join(" ");
        // Unknown rows (newer kernels) keep their position as their number.
        let resource = match resource_for_name(&name) {
            Some(r) => r,
            None => u32::try_from(out.len()).unwrap_or(u32::MAX),
        };
        out.push(Rlimit {
            resource,
            name,
            soft: value(toks[first_value], n)?,
            hard: value(toks[first_value + 1], n)?,
        });
    }
    Ok(out)
}

fn is_value(t: &[u8]) -> bool {
    t == b"unlimited" || (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
}

fn value(t: &[u8], n: usize) -> Result<u64, ParseError> {
    if t == b"unlimited" {
        Ok(RLIM_INFINITY)
    } else {
        text::dec(t, n, "limit")
    }
}

pub fn read_limits(pid: i32) -> Result<Vec<Rlimit>> {
    read_parsed(pid_path(pid, "limits"), |b| parse_limits(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/limits.txt");

    #[test]
    fn parses_captured_limits() {
        let v = parse_limits(SAMPLE).unwrap();
        assert_eq!(v.len(), 16);
        for (i, r) in v.iter().enumerate() {
            assert_eq!(r.resource as usize, i, "{}", r.name);
        }
        let get = |res: i32| v.iter().find(|r| r.resource == res as u32).unwrap();
        let cpu = get(libc::RLIMIT_CPU as i32);
        assert_eq!((cpu.soft, cpu.hard), (RLIM_INFINITY, RLIM_INFINITY));
        let stack = get(libc::RLIMIT_STACK as i32);
        assert_eq!(stack.name, "Max stack size");
        assert_eq!((stack.soft, stack.hard), (8388608, RLIM_INFINITY));
        let core = get(libc::RLIMIT_CORE as i32);
        assert_eq!(core.soft, 0);
        // Rows without units still parse.
        let nice = get(libc::RLIMIT_NICE as i32);
        assert_eq!(nice.name, "Max nice priority");
        assert_eq!(nice.soft, 0);
        assert_eq!(get(libc::RLIMIT_RTTIME as i32).hard, RLIM_INFINITY);
    }

    #[test]
    fn bad_and_unknown_rows() {
        let hdr =
            "Limit                     Soft Limit           Hard Limit           Units     \n";
        let err = parse_limits(format!(
            "{hdr}Max cpu time              lots                 unlimited            seconds\n"
        ));
        assert_eq!(err.unwrap_err().to_string(), "line 2: no soft and hard values in \"Max cpu time              lots                 unlimited            seconds\"");
        let err = parse_limits(format!(
            "{hdr}Max cpu time              99999999999999999999 1 seconds\n"
        ));
        assert_eq!(
            err.unwrap_err().to_string(),
            "line 2: bad limit \"99999999999999999999\""
        );
        let v = parse_limits(format!(
            "{hdr}Max cpu time   1 2 seconds\nMax new thing 3 unlimited\n"
        ))
        .unwrap();
        assert_eq!(v[1].name, "Max new thing");
        assert_eq!((v[1].resource, v[1].soft, v[1].hard), (1, 3, RLIM_INFINITY));
    }
}
