//! `/proc/PID/maps`: one line per memory area (VMA), and `/proc/PID/map_files`.

use crate::error::{ParseError, Result};
use crate::read::{dir_names, pid_path, read_link, read_parsed};
use crate::text::{self, lines, show};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The permission column, e.g. `r-xp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmaPerms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p` (MAP_PRIVATE).
    pub shared: bool,
}

impl VmaPerms {
    /// PROT_* bits for mmap/mprotect.
    pub fn prot(&self) -> i32 {
        let mut p = libc::PROT_NONE;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        if self.exec {
            p |= libc::PROT_EXEC;
        }
        p
    }
}

/// What the last column of a maps line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaName {
    /// No name: anonymous private memory (or a mapping of a file the kernel cannot name).
    Anonymous,
    Heap,
    Stack,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
    Uprobes,
    /// `[anon:NAME]`, set with PR_SET_VMA_ANON_NAME.
    AnonNamed(String),
    /// Any other `[...]` name the kernel reports, brackets included.
    Special(String),
    /// `anon_inode:NAME`, e.g. `anon_inode:[perf_event]`; NAME is kept as written.
    AnonInode(String),
    /// `/memfd:NAME (deleted)`.
    Memfd {
        name: String,
        deleted: bool,
    },
    /// `/SYSV%08x (deleted)`: a System V shared memory segment with this key.
    SysvShm {
        key: u32,
        deleted: bool,
    },
    /// A file path. `deleted` is set when the kernel appended " (deleted)"; that suffix is
    /// removed from `path`. Newlines in the name appear as the kernel writes them (`\012`):
    /// use `map_files` for the exact file.
    File {
        path: PathBuf,
        deleted: bool,
    },
}

impl VmaName {
    /// The vDSO and its data pages move together on restore.
    pub fn is_vdso_family(&self) -> bool {
        matches!(self, VmaName::Vdso | VmaName::Vvar | VmaName::VvarVclock)
    }
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub perms: VmaPerms,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub name: VmaName,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Parse the whole of `/proc/PID/maps`.
pub fn parse_maps(text: impl AsRef<[u8]>) -> Result<Vec<Vma>, ParseError> {
    lines(text.as_ref())
        .map(|(n, l)| parse_vma_line(l, n))
        .collect()
}

pub fn read_maps(pid: i32) -> Result<Vec<Vma>> {
    read_parsed(pid_path(pid, "maps"), |b| parse_maps(b))
}

/// True if the line starts like a VMA header: `hex-hex `. smaps uses this to tell a new
/// area from a field line.
pub fn is_vma_header(line: &[u8]) -> bool {
    let Some(dash) = line.iter().position(|&b| b == b'-') else {
        return false;
    };
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    dash > 0
        && sp > dash + 1
        && line[..dash].iter().all(u8::is_ascii_hexdigit)
        && line[dash + 1..sp].iter().all(u8::is_ascii_hexdigit)
}

/// Parse one maps line:
/// `7fb345d48000-7fb345d49000 rw-s 00000000 00:01 1028      /dev/zero (deleted)`.
pub fn parse_vma_line(line: &[u8], n: usize) -> Result<Vma, ParseError> {
    // The first five columns are single fields; the name is the rest of the line, which
    // may contain spaces.
    let mut rest = line;
    let mut col = || -> Result<&[u8], ParseError> {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        rest = r;
        if f.is_empty() {
            Err(ParseError::new(
                n,
                format!("too few columns in {}", show(line)),
            ))
        } else {
            Ok(f)
        }
    };
    let range = col()?;
    let perms = col()?;
    let offset = col()?;
    let dev = col()?;
    let inode = col()?;
    // Only leading padding goes: a file name may end in spaces.
    let name = text::trim_start(rest);

    let (start, end) = parse_range(range)
        .ok_or_else(|| ParseError::new(n, format!("bad address range {}", show(range))))?;
    let (dev_major, dev_minor) =
        parse_dev(dev).ok_or_else(|| ParseError::new(n, format!("bad device {}", show(dev))))?;
    Ok(Vma {
        start,
        end,
        perms: parse_perms(perms)
            .ok_or_else(|| ParseError::new(n, format!("bad permissions {}", show(perms))))?,
        offset: text::hex_u64(offset, n, "offset")?,
        dev_major,
        dev_minor,
        inode: text::dec(inode, n, "inode")?,
        name: parse_name(name),
    })
}

/// `start-end` in hex, with start <= end.
pub fn parse_range(s: &[u8]) -> Option<(u64, u64)> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let start = text::strict_hex(&s[..dash])?;
    let end = text::strict_hex(&s[dash + 1..])?;
    (start <= end).then_some((start, end))
}

/// `fe:00` (hex major:minor).
pub fn parse_dev(s: &[u8]) -> Option<(u32, u32)> {
    let colon = s.iter().position(|&b| b == b':')?;
    let major = u32::try_from(text::strict_hex(&s[..colon])?).ok()?;
    let minor = u32::try_from(text::strict_hex(&s[colon + 1..])?).ok()?;
    Some((major, minor))
}

fn parse_perms(s: &[u8]) -> Option<VmaPerms> {
    let [r, w, x, p] = s else { return None };
    let flag = |c: u8, yes: u8| match c {
        b'-' => Some(false),
        c if c == yes => Some(true),
        _ => None,
    };
    Some(VmaPerms {
        read: flag(*r, b'r')?,
        write: flag(*w, b'w')?,
        exec: flag(*x, b'x')?,
        shared: match p {
            b's' => true,
            b'p' => false,
            _ => return None,
        },
    })
}

const DELETED: &[u8] = b" (deleted)";

fn parse_name(s: &[u8]) -> VmaName {
    match s {
        b"" => return VmaName::Anonymous,
        b"[heap]" => return VmaName::Heap,
        b"[stack]" => return VmaName::Stack,
        b"[vdso]" => return VmaName::Vdso,
        b"[vvar]" => return VmaName::Vvar,
        b"[vvar_vclock]" => return VmaName::VvarVclock,
        b"[vsyscall]" => return VmaName::Vsyscall,
        b"[uprobes]" => return VmaName::Uprobes,
        _ => {}
    }
    if let Some(inner) = s.strip_prefix(b"[anon:").and_then(|r| r.strip_suffix(b"]")) {
        return VmaName::AnonNamed(text::lossy(inner));
    }
    if s.starts_with(b"[") && s.ends_with(b"]") {
        return VmaName::Special(text::lossy(s));
    }
    if let Some(inner) = s.strip_prefix(b"anon_inode:") {
        return VmaName::AnonInode(text::lossy(inner));
    }
    let (base, deleted) = match s.strip_suffix(DELETED) {
        Some(b) => (b, true),
        None => (s, false),
    };
    if let Some(name) = base.strip_prefix(b"/memfd:") {
        return VmaName::Memfd {
            name: text::lossy(name),
            deleted,
        };
    }
    if let Some(key) = base.strip_prefix(b"/SYSV") {
        if key.len() == 8 {
            if let Ok(key) = text::hex_u32(key, 0, "") {
                return VmaName::SysvShm { key, deleted };
            }
        }
    }
    VmaName::File {
        path: text::to_path(base),
        deleted,
    }
}

/// One entry of `/proc/PID/map_files`: a file-backed area and the file it maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFile {
    pub start: u64,
    pub end: u64,
    /// The readlink target (may end in " (deleted)").
    pub target: PathBuf,
}

/// Parse a map_files entry name, `55a0d3d19000-55a0d3d1b000`.
pub fn parse_map_file_name(name: &OsStr) -> Result<(u64, u64), ParseError> {
    parse_range(name.as_bytes())
        .ok_or_else(|| ParseError::whole(format!("bad map_files name {}", show(name.as_bytes()))))
}

/// `/proc/PID/map_files/START-END`, which can be opened to reach the mapped file even when
/// it was deleted (needs CAP_SYS_ADMIN).
pub fn map_file_path(pid: i32, start: u64, end: u64) -> PathBuf {
    pid_path(pid, &format!("map_files/{start:x}-{end:x}"))
}

/// List `/proc/PID/map_files` with link targets, sorted by address.
pub fn read_map_files(pid: i32) -> Result<Vec<MapFile>> {
    let dir = pid_path(pid, "map_files");
    let mut out = Vec::new();
    for name in dir_names(&dir)? {
        let (start, end) = parse_map_file_name(&name).map_err(|e| e.at(&dir))?;
        let target = read_link(&dir.join(&name))?;
        out.push(MapFile { start, end, target });
    }
    out.sort_by_key(|m| m.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/maps.txt");

    #[test]
    fn parses_captured_maps() {
        let v = parse_maps(SAMPLE).unwrap();
        assert_eq!(v.len(), SAMPLE.lines().count());
        let exe = &v[1];
        assert_eq!((exe.start, exe.end), (0x55afe2913000, 0x55afe2914000));
        assert_eq!(
            exe.perms,
            VmaPerms {
                read: true,
                write: false,
                exec: true,
                shared: false
            }
        );
        assert_eq!(exe.offset, 0x1000);
        assert_eq!(
            (exe.dev_major, exe.dev_minor, exe.inode),
            (0xfe, 0, 10011080)
        );
        assert_eq!(
            exe.name,
            VmaName::File {
                path: "/tmp/procfs-cap/cap".into(),
                deleted: false
            }
        );
        assert_eq!(exe.perms.prot(), libc::PROT_READ | libc::PROT_EXEC);

        let names: Vec<&VmaName> = v.iter().map(|v| &v.name).collect();
        assert!(names.contains(&&VmaName::Heap));
        assert!(names.contains(&&VmaName::Stack));
        assert!(names.contains(&&VmaName::Vsyscall));
        assert_eq!(v.iter().filter(|v| v.name.is_vdso_family()).count(), 3);
        assert!(names.contains(&&VmaName::File {
            path: "/dev/zero".into(),
            deleted: true
        }));
        assert!(names.contains(&&VmaName::SysvShm {
            key: 0,
            deleted: true
        }));
        assert!(names.contains(&&VmaName::Memfd {
            name: "my memfd".into(),
            deleted: true
        }));
        assert!(names.contains(&&VmaName::File {
            path: "/tmp/procfs-cap/deleted file".into(),
            deleted: true
        }));

        let shm = v
            .iter()
            .find(|v| matches!(v.name, VmaName::SysvShm { .. }))
            .unwrap();
        assert!(shm.perms.shared);
        assert_eq!((shm.dev_major, shm.dev_minor), (0, 1));
        let vsys = v.last().unwrap();
        assert_eq!(vsys.start, 0xffffffffff600000);
        assert_eq!(vsys.perms.prot(), libc::PROT_EXEC);
        let none = v
            .iter()
            .find(|v| v.perms.prot() == libc::PROT_NONE)
            .unwrap();
        assert_eq!(none.name, VmaName::Anonymous);
        assert_eq!(none.len(), 0x4000);
    }

    #[test]
    fn odd_names() {
        let line =
            |name: &str| format!("7f0000000000-7f0000001000 rw-s 00000000 00:0f 1234 {name}");
        let name = |n: &str| parse_vma_line(line(n).as_bytes(), 1).unwrap().name;
        assert_eq!(
            name("anon_inode:[perf_event]"),
            VmaName::AnonInode("[perf_event]".into())
        );
        assert_eq!(
            name("anon_inode:i915.gem"),
            VmaName::AnonInode("i915.gem".into())
        );
        assert_eq!(name("[anon:my heap]"), VmaName::AnonNamed("my heap".into()));
        assert_eq!(name("[stack:123]"), VmaName::Special("[stack:123]".into()));
        assert_eq!(name("[uprobes]"), VmaName::Uprobes);
        assert_eq!(
            name("/SYSV0000162e (deleted)"),
            VmaName::SysvShm {
                key: 0x162e,
                deleted: true
            }
        );
        assert_eq!(
            name("/memfd:  two  spaces "),
            VmaName::Memfd {
                name: "  two  spaces ".into(),
                deleted: false
            }
        );
        assert_eq!(
            name("/a dir/file (deleted) (deleted)"),
            VmaName::File {
                path: "/a dir/file (deleted)".into(),
                deleted: true
            }
        );
        assert_eq!(
            name("/SYSVxyz"),
            VmaName::File {
                path: "/SYSVxyz".into(),
                deleted: false
            }
        );
        // No trailing space after the inode is also fine.
        let v = parse_vma_line(b"1000-2000 ---p 00000000 00:00 0", 1).unwrap();
        assert_eq!(v.name, VmaName::Anonymous);
    }

    #[test]
    fn bad_lines_give_errors() {
        let err = |l: &str| {
            parse_maps(format!("1000-2000 r--p 00000000 00:00 0\n{l}\n"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("zz-2000 r--p 00000000 00:00 0"),
            "line 2: bad address range \"zz-2000\""
        );
        assert_eq!(
            err("3000-2000 r--p 00000000 00:00 0"),
            "line 2: bad address range \"3000-2000\""
        );
        assert_eq!(
            err("1000-2000 rq-p 00000000 00:00 0"),
            "line 2: bad permissions \"rq-p\""
        );
        assert_eq!(
            err("1000-2000 r--p 00000000 0000 0"),
            "line 2: bad device \"0000\""
        );
        assert_eq!(
            err("1000-2000 r--p 00000000 00:00 x"),
            "line 2: bad inode \"x\""
        );
        assert!(err("1000-2000 r--p").starts_with("line 2: too few columns"));
        assert!(parse_maps("").unwrap().is_empty());
    }

    #[test]
    fn header_detection() {
        assert!(is_vma_header(
            b"55a0d3d19000-55a0d3d1b000 r--p 0 fe:00 1 /x"
        ));
        assert!(!is_vma_header(b"Size:                  8 kB"));
        assert!(!is_vma_header(b"VmFlags: rd mr mw me"));
        assert!(!is_vma_header(b"-1000 x"));
    }

    #[test]
    fn map_files_names() {
        assert_eq!(
            parse_map_file_name(OsStr::new("7f5e6665c000-7f5e666b3000")).unwrap(),
            (0x7f5e6665c000, 0x7f5e666b3000)
        );
        assert!(parse_map_file_name(OsStr::new("junk")).is_err());
        assert_eq!(
            map_file_path(7, 0x1000, 0x2000),
            PathBuf::from("/proc/7/map_files/1000-2000")
        );
    }
}
