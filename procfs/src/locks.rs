//! `/proc/locks` (every file lock in the system) and the `lock:` lines of fdinfo, which share
//! one line format: `1: POSIX  ADVISORY  WRITE 9280 fe:00:10011077 10 29`.

use crate::error::{ParseError, Result};
use crate::read::read_parsed;
use crate::text::{self, fields, lines, show};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKind {
    Flock,
    Posix,
    /// Open file description lock (F_OFD_SETLK); its pid is -1.
    Ofd,
    Lease,
    /// A POSIX lock being tested with FL_ACCESS.
    Access,
    Other(String),
}

/// The second column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockMode {
    Advisory,
    /// Old kernels only.
    Mandatory,
    /// Old kernels: an flock with LOCK_MAND.
    MsNfs,
    /// A lock with no inode (`*NOINODE*`).
    NoInode,
    /// Lease states.
    Active,
    Breaking,
    Breaker,
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
    Unlock,
    /// Old LOCK_MAND locks only.
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLock {
    /// The ordinal the kernel printed (only meaningful within one read).
    pub id: u64,
    /// A `->` line: this task waits for the lock above it.
    pub blocked: bool,
    pub kind: LockKind,
    pub mode: LockMode,
    pub lock_type: LockType,
    /// Owner pid as seen from the reader's pid namespace (-1 for OFD locks, 0 if unseen).
    pub pid: i32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// None for `<none>:0`.
    pub inode: Option<u64>,
    pub start: u64,
    /// None for "EOF" (to the end of the file).
    pub end: Option<u64>,
}

/// Parse one lock line (without fdinfo's `lock:` prefix).
pub fn parse_lock_line(line: &[u8], n: usize) -> Result<FileLock, ParseError> {
    let mut toks: Vec<&[u8]> = fields(line).collect();
    let blocked = toks.get(1) == Some(&&b"->"[..]);
    if blocked {
        toks.remove(1);
    }
    let [id, kind, mode, ty, pid, dev, start, end] = toks[..] else {
        return Err(ParseError::new(
            n,
            format!("expected 8 columns in lock line {}", show(line)),
        ));
    };
    let id = id
        .strip_suffix(b":")
        .ok_or_else(|| ParseError::new(n, format!("bad lock id {}", show(id))))?;
    let (dev_major, dev_minor, inode) = parse_lock_dev(dev)
        .ok_or_else(|| ParseError::new(n, format!("bad lock device {}", show(dev))))?;
    Ok(FileLock {
        id: text::dec(id, n, "lock id")?,
        blocked,
        kind: match kind {
            b"FLOCK" => LockKind::Flock,
            b"POSIX" => LockKind::Posix,
            b"OFDLCK" => LockKind::Ofd,
            b"LEASE" => LockKind::Lease,
            b"ACCESS" => LockKind::Access,
            other => LockKind::Other(text::lossy(other)),
        },
        mode: match mode {
            b"ADVISORY" => LockMode::Advisory,
            b"MANDATORY" => LockMode::Mandatory,
            b"MSNFS" => LockMode::MsNfs,
            b"*NOINODE*" => LockMode::NoInode,
            b"ACTIVE" => LockMode::Active,
            b"BREAKING" => LockMode::Breaking,
            b"BREAKER" => LockMode::Breaker,
            other => LockMode::Other(text::lossy(other)),
        },
        lock_type: match ty {
            b"READ" => LockType::Read,
            b"WRITE" => LockType::Write,
            b"UNLCK" => LockType::Unlock,
            b"RW" => LockType::ReadWrite,
            other => return Err(ParseError::new(n, format!("bad lock type {}", show(other)))),
        },
        pid: text::dec(pid, n, "lock pid")?,
        dev_major,
        dev_minor,
        inode,
        start: text::dec(start, n, "lock start")?,
        end: if end == b"EOF" {
            None
        } else {
            Some(text::dec(end, n, "lock end")?)
        },
    })
}

/// `fe:00:10011077` (hex major, hex minor, decimal inode) or `<none>:0`.
fn parse_lock_dev(s: &[u8]) -> Option<(u32, u32, Option<u64>)> {
    if s.starts_with(b"<none>") {
        return Some((0, 0, None));
    }
    let mut parts = s.splitn(3, |&b| b == b':');
    let major = u32::try_from(text::strict_hex(parts.next()?)?).ok()?;
    let minor = u32::try_from(text::strict_hex(parts.next()?)?).ok()?;
    let ino = text::dec(parts.next()?, 0, "").ok()?;
    Some((major, minor, Some(ino)))
}

pub fn parse_locks(text: impl AsRef<[u8]>) -> Result<Vec<FileLock>, ParseError> {
    lines(text.as_ref())
        .map(|(n, l)| parse_lock_line(l, n))
        .collect()
}

/// Read `/proc/locks`. Filter by pid or by (device, inode) to get one task's view.
pub fn read_locks() -> Result<Vec<FileLock>> {
    read_parsed("/proc/locks".into(), |b| parse_locks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
1: OFDLCK ADVISORY  READ -1 fe:00:10011077 100 EOF
2: POSIX  ADVISORY  WRITE 9280 fe:00:10011077 10 29
2: -> POSIX  ADVISORY  WRITE 9300 fe:00:10011077 0 EOF
3: FLOCK  ADVISORY  WRITE 9280 fe:00:10011076 0 EOF
4: FLOCK  ADVISORY  READ 9001 fe:00:5325352 0 EOF
5: LEASE  ACTIVE    READ 42 00:2c:77 0 EOF
6: LEASE  BREAKING  UNLCK 43 00:2c:78 0 EOF
7: POSIX  *NOINODE* WRITE 44 <none>:0 0 EOF
";

    #[test]
    fn parses_all_kinds() {
        let v = parse_locks(SAMPLE).unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(
            v[1],
            FileLock {
                id: 2,
                blocked: false,
                kind: LockKind::Posix,
                mode: LockMode::Advisory,
                lock_type: LockType::Write,
                pid: 9280,
                dev_major: 0xfe,
                dev_minor: 0,
                inode: Some(10011077),
                start: 10,
                end: Some(29),
            }
        );
        assert_eq!(
            (v[0].kind.clone(), v[0].pid, v[0].lock_type, v[0].end),
            (LockKind::Ofd, -1, LockType::Read, None)
        );
        assert!(v[2].blocked && v[2].pid == 9300);
        assert_eq!(v[3].kind, LockKind::Flock);
        assert_eq!(
            (v[5].kind.clone(), v[5].mode.clone(), v[5].dev_minor),
            (LockKind::Lease, LockMode::Active, 0x2c)
        );
        assert_eq!(
            (v[6].mode.clone(), v[6].lock_type),
            (LockMode::Breaking, LockType::Unlock)
        );
        assert_eq!((v[7].mode.clone(), v[7].inode), (LockMode::NoInode, None));
    }

    #[test]
    fn bad_lock_lines() {
        let err = |l: &str| parse_locks(l).unwrap_err().to_string();
        assert_eq!(
            err("1: POSIX ADVISORY WRITE 1 fe:00:1 0"),
            "line 1: expected 8 columns in lock line \"1: POSIX ADVISORY WRITE 1 fe:00:1 0\""
        );
        assert_eq!(
            err("1 POSIX ADVISORY WRITE 1 fe:00:1 0 EOF"),
            "line 1: bad lock id \"1\""
        );
        assert_eq!(
            err("1: POSIX ADVISORY WRIT 1 fe:00:1 0 EOF"),
            "line 1: bad lock type \"WRIT\""
        );
        assert_eq!(
            err("1: POSIX ADVISORY WRITE 1 fe-00-1 0 EOF"),
            "line 1: bad lock device \"fe-00-1\""
        );
        assert_eq!(
            err("1: POSIX ADVISORY WRITE 1 fe:00:1 0 E0F"),
            "line 1: bad lock end \"E0F\""
        );
    }
}
