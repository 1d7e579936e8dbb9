//! `/proc/PID/cgroup` (and per thread): `hierarchy-id:controllers:path` per line.
//! cgroup v1 lines name controllers (`4:memory:/x`, `2:name=systemd:/`); the v2 line is `0::/x`.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed, tid_path};
use crate::text::{self, lines, show};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    pub hierarchy_id: u32,
    /// Controllers of a v1 hierarchy (named hierarchies appear as "name=systemd"); empty for
    /// the v2 hierarchy.
    pub controllers: Vec<String>,
    /// The cgroup's path relative to the hierarchy root (as the reader's cgroup namespace
    /// shows it).
    pub path: String,
}

impl CgroupEntry {
    pub fn is_v2(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty()
    }
}

pub fn parse_cgroup(text: impl AsRef<[u8]>) -> Result<Vec<CgroupEntry>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(text.as_ref()) {
        // The path itself may contain ':', so split only twice.
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(ctls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::new(
                n,
                format!("expected id:controllers:path, found {}", show(line)),
            ));
        };
        let controllers = if ctls.is_empty() {
            Vec::new()
        } else {
            ctls.split(|&b| b == b',').map(text::lossy).collect()
        };
        out.push(CgroupEntry {
            hierarchy_id: text::dec(id, n, "hierarchy id")?,
            controllers,
            path: text::lossy(path),
        });
    }
    Ok(out)
}

pub fn read_cgroup(pid: i32) -> Result<Vec<CgroupEntry>> {
    read_parsed(pid_path(pid, "cgroup"), |b| parse_cgroup(b))
}

pub fn read_thread_cgroup(pid: i32, tid: i32) -> Result<Vec<CgroupEntry>> {
    read_parsed(tid_path(pid, tid, "cgroup"), |b| parse_cgroup(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on this machine (hybrid v1 + v2).
    const SAMPLE: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
        4:memory:/process_api/379f9e65f86685049c4d35dc62926d2b\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn parses_hybrid_hierarchies() {
        let v = parse_cgroup(SAMPLE).unwrap();
        assert_eq!(v.len(), 10);
        assert_eq!(v[0].controllers, vec!["name=systemd".to_string()]);
        assert_eq!(v[5].hierarchy_id, 4);
        assert_eq!(v[5].path, "/process_api/379f9e65f86685049c4d35dc62926d2b");
        assert!(v[9].is_v2() && v[9].path == "/");
        assert!(!v[0].is_v2());
        let v = parse_cgroup("3:cpu,cpuacct:/a:b\n").unwrap();
        assert_eq!(
            v[0].controllers,
            vec!["cpu".to_string(), "cpuacct".to_string()]
        );
        assert_eq!(v[0].path, "/a:b");
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            parse_cgroup("0::/\n4/memory\n").unwrap_err().to_string(),
            "line 2: expected id:controllers:path, found \"4/memory\""
        );
        assert_eq!(
            parse_cgroup("x:cpu:/\n").unwrap_err().to_string(),
            "line 1: bad hierarchy id \"x\""
        );
    }
}
