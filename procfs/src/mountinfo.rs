//! `/proc/PID/mountinfo`: one line per mount in the task's mount namespace.
//!
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, fields, lines, show};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountInfo {
    pub mnt_id: i32,
    pub parent_id: i32,
    pub major: u32,
    pub minor: u32,
    /// The path inside the filesystem that is mounted (octal escapes decoded).
    pub root: PathBuf,
    /// Where it is mounted, relative to the task's root (octal escapes decoded).
    pub mount_point: PathBuf,
    /// Per-mount options: "rw,nosuid,relatime".
    pub mount_options: String,
    /// Peer group this mount shares events with (`shared:N`).
    pub shared: Option<u32>,
    /// Peer group this mount receives events from (`master:N`).
    pub master: Option<u32>,
    /// The nearest dominant peer group visible here (`propagate_from:N`).
    pub propagate_from: Option<u32>,
    pub unbindable: bool,
    /// Optional fields this crate does not know, kept as written.
    pub other_tags: Vec<String>,
    /// Filesystem type, with any subtype: "ext4", "fuse.sshfs".
    pub fstype: String,
    /// The mount source (octal escapes decoded); empty if the kernel printed none.
    pub source: String,
    /// Superblock options, as written (their escapes are not decoded).
    pub super_options: String,
}

pub fn parse_mountinfo(text: impl AsRef<[u8]>) -> Result<Vec<MountInfo>, ParseError> {
    lines(text.as_ref())
        .map(|(n, l)| parse_mount_line(l, n))
        .collect()
}

fn parse_mount_line(line: &[u8], n: usize) -> Result<MountInfo, ParseError> {
    // Paths are escaped, so splitting on whitespace is safe.
    let toks: Vec<&[u8]> = fields(line).collect();
    if toks.len() < 6 {
        return Err(ParseError::new(
            n,
            format!("too few fields in {}", show(line)),
        ));
    }
    let sep = toks
        .iter()
        .skip(6)
        .position(|t| *t == b"-")
        .map(|p| p + 6)
        .ok_or_else(|| ParseError::new(n, format!("no '-' separator in {}", show(line))))?;
    let tail = &toks[sep + 1..];
    let (fstype, source, super_options) = match tail {
        [fstype, source, opts] => (*fstype, *source, *opts),
        // An empty source leaves only two fields.
        [fstype, opts] => (*fstype, &b""[..], *opts),
        _ => {
            return Err(ParseError::new(
                n,
                format!(
                    "expected fstype, source and options after '-' in {}",
                    show(line)
                ),
            ))
        }
    };
    let dev = toks[2];
    let colon = dev
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ParseError::new(n, format!("bad device {}", show(dev))))?;
    let mut m = MountInfo {
        mnt_id: text::dec(toks[0], n, "mount id")?,
        parent_id: text::dec(toks[1], n, "parent id")?,
        major: text::dec(&dev[..colon], n, "device major")?,
        minor: text::dec(&dev[colon + 1..], n, "device minor")?,
        root: text::to_path(&text::unescape_octal(toks[3])),
        mount_point: text::to_path(&text::unescape_octal(toks[4])),
        mount_options: text::lossy(toks[5]),
        fstype: text::lossy(fstype),
        source: text::lossy(&text::unescape_octal(source)),
        super_options: text::lossy(super_options),
        ..MountInfo::default()
    };
    for tag in &toks[6..sep] {
        let num = |prefix: &[u8], what: &str| -> Result<Option<u32>, ParseError> {
            tag.strip_prefix(prefix)
                .map(|v| text::dec(v, n, what))
                .transpose()
        };
        if let Some(v) = num(b"shared:", "shared peer group")? {
            m.shared = Some(v);
        } else if let Some(v) = num(b"master:", "master peer group")? {
            m.master = Some(v);
        } else if let Some(v) = num(b"propagate_from:", "propagate_from peer group")? {
            m.propagate_from = Some(v);
        } else if *tag == b"unbindable" {
            m.unbindable = true;
        } else {
            m.other_tags.push(text::lossy(tag));
        }
    }
    Ok(m)
}

pub fn read_mountinfo(pid: i32) -> Result<Vec<MountInfo>> {
    read_parsed(pid_path(pid, "mountinfo"), |b| parse_mountinfo(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/mountinfo.txt");

    #[test]
    fn parses_captured_mountinfo() {
        let v = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(v.len(), SAMPLE.lines().count());
        let root = v
            .iter()
            .find(|m| m.mount_point == std::path::Path::new("/"))
            .unwrap();
        assert_eq!(
            (root.mnt_id, root.parent_id, root.major, root.minor),
            (27, 1, 254, 0)
        );
        assert_eq!(
            (root.fstype.as_str(), root.source.as_str()),
            ("ext4", "/dev/vda")
        );
        assert_eq!(
            root.super_options,
            "rw,discard,resv_strict,resuid=65534,resgid=65534"
        );
        assert_eq!(root.mount_options, "rw,relatime");
        assert_eq!(
            (root.shared, root.master, root.unbindable),
            (None, None, false)
        );

        let spaced = v.iter().find(|m| m.mnt_id == 63).unwrap();
        assert_eq!(spaced.mount_point, PathBuf::from("/tmp/procfs-cap/mnt a b"));
        assert_eq!(spaced.source, "src x\\y");
        assert_eq!(spaced.shared, Some(1));

        let slave = v.iter().find(|m| m.mnt_id == 65).unwrap();
        assert_eq!((slave.shared, slave.master), (None, Some(2)));
        assert_eq!(slave.super_options, "rw,size=1024k,mode=700");

        let pf = v.iter().find(|m| m.mnt_id == 70).unwrap();
        assert_eq!(pf.root, PathBuf::from("/sub\tdir"));
        assert_eq!((pf.master, pf.propagate_from), (Some(2), Some(1)));
        assert!(v.iter().find(|m| m.mnt_id == 71).unwrap().unbindable);

        let cg2 = v.iter().find(|m| m.fstype == "cgroup2").unwrap();
        assert_eq!(cg2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unusual_lines() {
        let m = parse_mountinfo("30 1 0:5 / /x rw shared:3 master:4 future:9 - fuse.sshfs  rw\n")
            .unwrap();
        assert_eq!((m[0].shared, m[0].master), (Some(3), Some(4)));
        assert_eq!(m[0].other_tags, vec!["future:9".to_string()]);
        assert_eq!(
            (
                m[0].fstype.as_str(),
                m[0].source.as_str(),
                m[0].super_options.as_str()
            ),
            ("fuse.sshfs", "", "rw")
        );
        // A mount point literally named "-" is not the separator.
        let m = parse_mountinfo("30 1 0:5 / - rw - tmpfs none rw\n").unwrap();
        assert_eq!(m[0].mount_point, PathBuf::from("-"));
    }

    #[test]
    fn bad_lines() {
        let err = |l: &str| parse_mountinfo(l).unwrap_err().to_string();
        assert_eq!(err("1 2 3"), "line 1: too few fields in \"1 2 3\"");
        assert_eq!(
            err("30 1 0:5 / /x rw shared:3 tmpfs none rw"),
            "line 1: no '-' separator in \"30 1 0:5 / /x rw shared:3 tmpfs none rw\""
        );
        assert_eq!(
            err("30 1 05 / /x rw - tmpfs none rw"),
            "line 1: bad device \"05\""
        );
        assert_eq!(
            err("x 1 0:5 / /x rw - tmpfs none rw"),
            "line 1: bad mount id \"x\""
        );
        assert_eq!(
            err("30 1 0:5 / /x rw shared:q - tmpfs none rw"),
            "line 1: bad shared peer group \"q\""
        );
        assert!(err("30 1 0:5 / /x rw - tmpfs")
            .starts_with("line 1: expected fstype, source and options"));
    }
}
