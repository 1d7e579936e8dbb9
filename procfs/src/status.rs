//! `/proc/PID/status` and `/proc/PID/task/TID/status`: "Key:\tvalue" lines.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed, tid_path};
use crate::text::{self, fields, lines, show};

/// The fields a dump needs from status. Masks are 64-bit (signal 1 is bit 0); capability
/// sets are 64-bit (capability N is bit N).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The task's comm, with the kernel's `\n` and `\\` escapes undone.
    pub name: String,
    /// Absent on kernels before 4.7.
    pub umask: Option<u32>,
    /// The state letter (R, S, D, T, t, Z, X, ...).
    pub state: char,
    pub tgid: i32,
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub fd_size: u32,
    pub groups: Vec<u32>,
    /// Ids in each pid namespace the task is in, outermost first. Empty if the kernel
    /// does not print them.
    pub ns_tgid: Vec<i32>,
    pub ns_pid: Vec<i32>,
    pub ns_pgid: Vec<i32>,
    pub ns_sid: Vec<i32>,
    pub threads: u32,
    /// Queued signals and the queue limit ("SigQ: 0/96365").
    pub sig_queued: u64,
    pub sig_queue_limit: u64,
    /// Pending for this thread.
    pub sig_pnd: u64,
    /// Pending for the whole thread group.
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    /// Zero on kernels before 4.3, which lack the line.
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter; 0 when the kernel has no seccomp.
    pub seccomp: u32,
    pub seccomp_filters: u32,
    /// "THP_enabled": false when PR_SET_THP_DISABLE is set; absent before 5.0.
    pub thp_enabled: Option<bool>,
}

impl Status {
    /// The id in the innermost pid namespace (what the task itself sees as its pid).
    pub fn vpid(&self) -> i32 {
        self.ns_pid.last().copied().unwrap_or(self.pid)
    }
}

/// Lines that must be there in any kernel this crate supports.
const REQUIRED: [&str; 18] = [
    "Name",
    "State",
    "Tgid",
    "Pid",
    "PPid",
    "TracerPid",
    "Uid",
    "Gid",
    "SigPnd",
    "ShdPnd",
    "SigBlk",
    "SigIgn",
    "SigCgt",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "FDSize",
];

pub fn parse_status(text: impl AsRef<[u8]>) -> Result<Status, ParseError> {
    let mut s = Status::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (n, line) in lines(text.as_ref()) {
        let Some((key, value)) = text::key_value(line) else {
            return Err(ParseError::new(n, format!("no ':' in {}", show(line))));
        };
        if let Some(req) = REQUIRED.iter().find(|r| r.as_bytes() == key) {
            seen.push(req);
        }
        let what = text::lossy(key);
        let what = what.as_str();
        let mask = |v: &[u8]| text::hex_u64(v, n, what);
        match key {
            // Not the trimmed value: a name may start or end with spaces.
            b"Name" => s.name = unescape_name(line[5..].strip_prefix(b"\t").unwrap_or(&line[5..])),
            b"Umask" => s.umask = Some(text::oct_u32(value, n, what)?),
            b"State" => {
                s.state = match value.first() {
                    Some(c) if c.is_ascii_alphabetic() => char::from(*c),
                    _ => return Err(ParseError::new(n, format!("bad State {}", show(value)))),
                }
            }
            b"Tgid" => s.tgid = text::dec(value, n, what)?,
            b"Pid" => s.pid = text::dec(value, n, what)?,
            b"PPid" => s.ppid = text::dec(value, n, what)?,
            b"TracerPid" => s.tracer_pid = text::dec(value, n, what)?,
            b"Uid" => s.uid = four_ids(value, n, what)?,
            b"Gid" => s.gid = four_ids(value, n, what)?,
            b"FDSize" => s.fd_size = text::dec(value, n, what)?,
            b"Groups" => s.groups = list(value, n, what)?,
            b"NStgid" => s.ns_tgid = list(value, n, what)?,
            b"NSpid" => s.ns_pid = list(value, n, what)?,
            b"NSpgid" => s.ns_pgid = list(value, n, what)?,
            b"NSsid" => s.ns_sid = list(value, n, what)?,
            b"Threads" => s.threads = text::dec(value, n, what)?,
            b"SigQ" => {
                let slash = value.iter().position(|&b| b == b'/');
                let slash =
                    slash.ok_or_else(|| ParseError::new(n, format!("bad SigQ {}", show(value))))?;
                s.sig_queued = text::dec(&value[..slash], n, what)?;
                s.sig_queue_limit = text::dec(&value[slash + 1..], n, what)?;
            }
            b"SigPnd" => s.sig_pnd = mask(value)?,
            b"ShdPnd" => s.shd_pnd = mask(value)?,
            b"SigBlk" => s.sig_blk = mask(value)?,
            b"SigIgn" => s.sig_ign = mask(value)?,
            b"SigCgt" => s.sig_cgt = mask(value)?,
            b"CapInh" => s.cap_inh = mask(value)?,
            b"CapPrm" => s.cap_prm = mask(value)?,
            b"CapEff" => s.cap_eff = mask(value)?,
            b"CapBnd" => s.cap_bnd = mask(value)?,
            b"CapAmb" => s.cap_amb = mask(value)?,
            b"NoNewPrivs" => s.no_new_privs = text::dec::<u32>(value, n, what)? != 0,
            b"Seccomp" => s.seccomp = text::dec(value, n, what)?,
            b"Seccomp_filters" => s.seccomp_filters = text::dec(value, n, what)?,
            b"THP_enabled" => s.thp_enabled = Some(text::dec::<u32>(value, n, what)? != 0),
            _ => {}
        }
    }
    if let Some(missing) = REQUIRED.iter().find(|r| !seen.contains(r)) {
        return Err(ParseError::whole(format!("no {missing} line")));
    }
    Ok(s)
}

fn list<T: std::str::FromStr>(value: &[u8], n: usize, what: &str) -> Result<Vec<T>, ParseError> {
    fields(value).map(|f| text::dec(f, n, what)).collect()
}

fn four_ids(value: &[u8], n: usize, what: &str) -> Result<[u32; 4], ParseError> {
    let ids: Vec<u32> = list(value, n, what)?;
    ids.try_into()
        .map_err(|_| ParseError::new(n, format!("{what} needs 4 ids, found {}", show(value))))
}

/// The kernel writes a newline in comm as `\n` and a backslash as `\\`.
fn unescape_name(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match (v[i], v.get(i + 1)) {
            (b'\\', Some(b'n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    text::lossy(&out)
}

pub fn read_status(pid: i32) -> Result<Status> {
    read_parsed(pid_path(pid, "status"), |b| parse_status(b))
}

/// `pid` (as criu sees it) as task `viewer` sees it: the entry of its NSpid list at the
/// depth of the viewer's own pid namespace. The same number when the viewer shares criu's pid
/// namespace; `None` when `pid` is gone or outside the viewer's namespace. Images hold pids
/// as the tasks see them.
pub fn pid_seen_by(viewer: i32, pid: i32) -> Option<i32> {
    if pid <= 0 {
        return Some(pid);
    }
    let depth = read_status(viewer).ok()?.ns_pid.len().max(1);
    if depth == 1 {
        return Some(pid);
    }
    read_status(pid).ok()?.ns_pid.get(depth - 1).copied()
}

pub fn read_thread_status(pid: i32, tid: i32) -> Result<Status> {
    read_parsed(tid_path(pid, tid, "status"), |b| parse_status(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/status.txt");

    #[test]
    fn parses_captured_status() {
        let s = parse_status(SAMPLE).unwrap();
        assert_eq!(s.name, "a) b (c)");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.state, 'R');
        assert_eq!(
            (s.tgid, s.pid, s.ppid, s.tracer_pid),
            (20519, 20519, 20446, 0)
        );
        assert_eq!((s.uid, s.gid), ([0; 4], [0; 4]));
        assert_eq!(s.fd_size, 256);
        assert!(s.groups.is_empty());
        assert_eq!(
            (s.ns_tgid.clone(), s.ns_pid.clone()),
            (vec![20519], vec![20519])
        );
        assert_eq!(
            (s.ns_pgid.clone(), s.ns_sid.clone()),
            (vec![20446], vec![7546])
        );
        assert_eq!((s.sig_queued, s.sig_queue_limit), (1, 96365));
        assert_eq!(s.cap_prm, 0x000001fffeffffff);
        assert_eq!(s.cap_eff, s.cap_prm);
        assert_eq!(s.cap_bnd, s.cap_prm);
        assert_eq!((s.cap_inh, s.cap_amb), (0, 0));
        assert_eq!(s.threads, 1);
        assert!(!s.no_new_privs);
        assert_eq!((s.seccomp, s.seccomp_filters), (0, 0));
    }

    #[test]
    fn nested_namespaces_ids_and_masks() {
        let text = SAMPLE
            .replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1001\t1002\t1003")
            .replace("Groups:\t ", "Groups:\t4 24 27 ")
            .replace("NSpid:\t20519", "NSpid:\t20519\t7\t1")
            .replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000010002")
            .replace("SigPnd:\t0000000000000000", "SigPnd:\t8000000000000000")
            .replace("Seccomp:\t0", "Seccomp:\t2")
            .replace("Seccomp_filters:\t0", "Seccomp_filters:\t3")
            .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
            .replace("Name:\ta) b (c)", "Name:\t x\\nweird\\\\ ");
        let s = parse_status(text).unwrap();
        assert_eq!(s.uid, [1000, 1001, 1002, 1003]);
        assert_eq!(s.groups, vec![4, 24, 27]);
        assert_eq!(s.ns_pid, vec![20519, 7, 1]);
        assert_eq!(s.vpid(), 1);
        assert_eq!(s.sig_blk, (1 << 1) | (1 << 16));
        assert_eq!(s.sig_pnd, 1 << 63);
        assert_eq!((s.seccomp, s.seccomp_filters, s.no_new_privs), (2, 3, true));
        assert_eq!(s.name, " x\nweird\\ ");
    }

    #[test]
    fn bad_status() {
        let err = |t: String| parse_status(t).unwrap_err().to_string();
        assert_eq!(err(SAMPLE.replace("Uid:", "Xid:")), "no Uid line");
        assert_eq!(
            err(SAMPLE.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0")),
            "line 9: Uid needs 4 ids, found \"0\\t0\""
        );
        assert_eq!(
            err(SAMPLE.replace("SigBlk:\t0000000000000000", "SigBlk:\tzz")),
            "line 41: bad SigBlk \"zz\""
        );
        assert_eq!(
            err(SAMPLE.replace("PPid:\t20446", "PPid:\t")),
            "line 7: bad PPid \"\""
        );
        assert_eq!(
            err(SAMPLE.replace("SigQ:\t1/96365", "SigQ:\t0")),
            "line 38: bad SigQ \"0\""
        );
        assert_eq!(
            err("junk line".to_string()),
            "line 1: no ':' in \"junk line\""
        );
    }
}
