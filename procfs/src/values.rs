//! One-value files: `comm`, `personality`, `oom_score_adj`, `loginuid`, `timerslack_ns`.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed, tid_path};
use crate::text;

/// loginuid of a task that never logged in.
pub const LOGINUID_UNSET: u32 = u32::MAX;

fn one_value(bytes: &[u8]) -> Result<&[u8], ParseError> {
    let v = text::trim(bytes);
    if v.is_empty() {
        return Err(ParseError::whole("file is empty"));
    }
    Ok(v)
}

/// `comm`: the name plus a newline (only the final newline is removed: a name may end in
/// spaces).
pub fn parse_comm(bytes: &[u8]) -> String {
    text::lossy(bytes.strip_suffix(b"\n").unwrap_or(bytes))
}

pub fn read_comm(pid: i32) -> Result<String> {
    read_parsed(pid_path(pid, "comm"), |b| Ok(parse_comm(b)))
}

pub fn read_thread_comm(pid: i32, tid: i32) -> Result<String> {
    read_parsed(tid_path(pid, tid, "comm"), |b| Ok(parse_comm(b)))
}

/// `personality`: hex, e.g. "00000000".
pub fn parse_personality(bytes: &[u8]) -> Result<u32, ParseError> {
    text::hex_u32(one_value(bytes)?, 0, "personality")
}

/// Reading personality needs ptrace access to the task.
pub fn read_personality(pid: i32) -> Result<u32> {
    read_parsed(pid_path(pid, "personality"), parse_personality)
}

/// `oom_score_adj`: -1000..1000.
pub fn parse_oom_score_adj(bytes: &[u8]) -> Result<i32, ParseError> {
    text::dec(one_value(bytes)?, 0, "oom_score_adj")
}

pub fn read_oom_score_adj(pid: i32) -> Result<i32> {
    read_parsed(pid_path(pid, "oom_score_adj"), parse_oom_score_adj)
}

/// `loginuid`: decimal, [`LOGINUID_UNSET`] when unset (the file has no newline).
pub fn parse_loginuid(bytes: &[u8]) -> Result<u32, ParseError> {
    text::dec(one_value(bytes)?, 0, "loginuid")
}

pub fn read_loginuid(pid: i32) -> Result<u32> {
    read_parsed(pid_path(pid, "loginuid"), parse_loginuid)
}

/// `timerslack_ns`: nanoseconds.
pub fn parse_timerslack_ns(bytes: &[u8]) -> Result<u64, ParseError> {
    text::dec(one_value(bytes)?, 0, "timerslack_ns")
}

pub fn read_timerslack_ns(pid: i32) -> Result<u64> {
    read_parsed(pid_path(pid, "timerslack_ns"), parse_timerslack_ns)
}

/// A sysctl file's text. A sysctl answers only a read at offset 0 (a second read, which a
/// reader that starts small makes, gets end of file), so it is read in one call.
pub fn read_sysctl(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path)?.read(&mut buf)?;
    buf.truncate(n);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_values() {
        assert_eq!(parse_personality(b"00000000\n").unwrap(), 0);
        assert_eq!(parse_personality(b"00400000\n").unwrap(), 0x0040_0000); // ADDR_NO_RANDOMIZE
        assert_eq!(parse_oom_score_adj(b"0\n").unwrap(), 0);
        assert_eq!(parse_oom_score_adj(b"-1000\n").unwrap(), -1000);
        assert_eq!(parse_loginuid(b"4294967295").unwrap(), LOGINUID_UNSET);
        assert_eq!(parse_timerslack_ns(b"50000\n").unwrap(), 50000);
        assert_eq!(parse_comm(b"a) b (c)\n"), "a) b (c)");
        assert_eq!(parse_comm(b"trailing \n"), "trailing ");
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            parse_oom_score_adj(b"").unwrap_err().to_string(),
            "file is empty"
        );
        assert_eq!(
            parse_personality(b"xyz\n").unwrap_err().to_string(),
            "bad personality \"xyz\""
        );
        assert_eq!(
            parse_loginuid(b"-1").unwrap_err().to_string(),
            "bad loginuid \"-1\""
        );
    }
}
