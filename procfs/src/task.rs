//! The task tree: threads (`/proc/PID/task`), children (`/proc/PID/task/TID/children`),
//! and the argument, environment and aux vectors.

use crate::error::{ParseError, Result};
use crate::read::{numeric_dir, pid_path, read_parsed, tid_path};
use crate::text::{self, fields};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Thread ids of a process, sorted.
pub fn read_task_ids(pid: i32) -> Result<Vec<i32>> {
    numeric_dir(&pid_path(pid, "task"))
}

/// `children`: space-separated pids of the thread's children.
pub fn parse_children(text: impl AsRef<[u8]>) -> Result<Vec<i32>, ParseError> {
    fields(text.as_ref())
        .map(|f| text::dec(f, 0, "child pid"))
        .collect()
}

/// Children of one thread. A process's children are the union over its threads.
pub fn read_children(pid: i32, tid: i32) -> Result<Vec<i32>> {
    read_parsed(tid_path(pid, tid, "children"), |b| parse_children(b))
}

/// The pid criu sees for a child of `pid` (any thread's) that `pid` sees as `id` (in the pid
/// namespace of `pid`, which may be above the child's own); with `threads`, a thread of
/// `pid` instead. `None` if there is none.
pub fn find_seen_by(pid: i32, id: i32, threads: bool) -> Result<Option<i32>> {
    let level = crate::read_status(pid)?.ns_pid.len().saturating_sub(1);
    let mut candidates = Vec::new();
    for tid in read_task_ids(pid)? {
        if threads {
            candidates.push(tid);
        } else {
            candidates.extend(read_children(pid, tid)?);
        }
    }
    // Newest last in each list: a task just made is found at once.
    Ok(candidates
        .into_iter()
        .rev()
        .find(|&c| crate::read_status(c).is_ok_and(|s| s.ns_pid.get(level) == Some(&id))))
}

/// `cmdline` and `environ`: NUL-terminated strings. A missing final NUL (a process that
/// rewrote its arguments) is accepted.
pub fn parse_nul_separated(bytes: &[u8]) -> Vec<OsString> {
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if body.is_empty() && bytes.len() <= 1 {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

pub fn read_cmdline(pid: i32) -> Result<Vec<OsString>> {
    read_parsed(pid_path(pid, "cmdline"), |b| Ok(parse_nul_separated(b)))
}

pub fn read_environ(pid: i32) -> Result<Vec<OsString>> {
    read_parsed(pid_path(pid, "environ"), |b| Ok(parse_nul_separated(b)))
}

/// AT_NULL, which ends the aux vector.
pub const AT_NULL: u64 = 0;

/// `auxv`: (type, value) pairs of native-endian u64, up to (not including) AT_NULL.
pub fn parse_auxv(bytes: &[u8]) -> Result<Vec<(u64, u64)>, ParseError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(ParseError::whole(format!(
            "length {} is not a multiple of 16",
            bytes.len()
        )));
    }
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_ne_bytes(w)
    };
    Ok(bytes
        .chunks_exact(16)
        .map(|c| (word(&c[..8]), word(&c[8..])))
        .take_while(|(k, _)| *k != AT_NULL)
        .collect())
}

pub fn read_auxv(pid: i32) -> Result<Vec<(u64, u64)>> {
    read_parsed(pid_path(pid, "auxv"), parse_auxv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_lists() {
        assert_eq!(parse_children("8408 8410 ").unwrap(), vec![8408, 8410]);
        assert!(parse_children("").unwrap().is_empty());
        assert_eq!(
            parse_children("12 x").unwrap_err().to_string(),
            "bad child pid \"x\""
        );
    }

    #[test]
    fn nul_separated() {
        let v = parse_nul_separated(b"cat\0/proc/self/cmdline\0\0x\0");
        assert_eq!(
            v,
            vec![
                OsString::from("cat"),
                "/proc/self/cmdline".into(),
                "".into(),
                "x".into()
            ]
        );
        assert_eq!(
            parse_nul_separated(b"rewritten title"),
            vec![OsString::from("rewritten title")]
        );
        assert!(parse_nul_separated(b"").is_empty());
        assert_eq!(parse_nul_separated(b"\0"), Vec::<OsString>::new());
    }

    #[test]
    fn auxv_pairs() {
        // The start of a captured auxv: AT_SYSINFO_EHDR, AT_MINSIGSTKSZ, AT_HWCAP, AT_PAGESZ.
        let words: [u64; 10] = [
            0x21,
            0x7f794a85c000,
            0x33,
            0xd30,
            0x10,
            0x178bfbff,
            6,
            0x1000,
            0,
            0,
        ];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let v = parse_auxv(&bytes).unwrap();
        assert_eq!(
            v,
            vec![
                (0x21, 0x7f794a85c000),
                (0x33, 0xd30),
                (0x10, 0x178bfbff),
                (6, 0x1000)
            ]
        );
        assert_eq!(
            parse_auxv(&bytes[..20]).unwrap_err().to_string(),
            "length 20 is not a multiple of 16"
        );
    }
}
