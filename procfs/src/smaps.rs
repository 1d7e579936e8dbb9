//! `/proc/PID/smaps`: the maps lines again, each followed by sizes and a `VmFlags:` line.

use crate::error::{ParseError, Result};
use crate::maps::{is_vma_header, parse_vma_line, Vma};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, fields, lines, show};
use std::fmt;

/// The two-letter flags of a `VmFlags:` line, as a set. The bit positions are this crate's
/// own (they are not the kernel's VM_* values); use the named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmFlags(u64);

/// (mnemonic, meaning) in bit order; the constants below index this table.
const NAMES: [(&str, &str); 40] = [
    ("rd", "readable"),
    ("wr", "writable"),
    ("ex", "executable"),
    ("sh", "shared"),
    ("mr", "may read"),
    ("mw", "may write"),
    ("me", "may execute"),
    ("ms", "may share"),
    ("gd", "stack grows down"),
    ("pf", "pure PFN range"),
    ("dw", "disabled write to the mapped file"),
    ("lo", "pages locked in memory"),
    ("io", "memory mapped I/O"),
    ("sr", "sequential read advised"),
    ("rr", "random read advised"),
    ("dc", "do not copy on fork"),
    ("de", "do not expand on remap"),
    ("ac", "accountable"),
    ("nr", "swap space not reserved"),
    ("ht", "huge TLB pages"),
    ("sf", "synchronous page faults"),
    ("nl", "non-linear mapping"),
    ("ar", "architecture specific"),
    ("wf", "wipe on fork"),
    ("dd", "do not include in core dumps"),
    ("sd", "soft dirty"),
    ("mm", "mixed map"),
    ("hg", "huge page advised"),
    ("nh", "no huge page advised"),
    ("mg", "mergeable advised"),
    ("um", "userfaultfd missing tracking"),
    ("uw", "userfaultfd write-protect tracking"),
    ("ss", "shadow stack"),
    ("sl", "sealed"),
    ("lf", "lock on fault"),
    ("ui", "userfaultfd minor fault tracking"),
    ("dp", "droppable"),
    ("bt", "arm64 BTI guarded"),
    ("mt", "arm64 MTE allowed"),
    ("gu", "guard regions"),
];

macro_rules! flags {
    ($($name:ident = $bit:expr;)*) => {
        impl VmFlags {
            $(pub const $name: VmFlags = VmFlags(1 << $bit);)*
        }
    };
}

flags! {
    READ = 0; WRITE = 1; EXEC = 2; SHARED = 3;
    MAYREAD = 4; MAYWRITE = 5; MAYEXEC = 6; MAYSHARE = 7;
    GROWSDOWN = 8; PFNMAP = 9; DENYWRITE = 10; LOCKED = 11; IO = 12;
    SEQ_READ = 13; RAND_READ = 14; DONTCOPY = 15; DONTEXPAND = 16; ACCOUNT = 17;
    NORESERVE = 18; HUGETLB = 19; SYNC = 20; NONLINEAR = 21; ARCH_1 = 22;
    WIPEONFORK = 23; DONTDUMP = 24; SOFTDIRTY = 25; MIXEDMAP = 26;
    HUGEPAGE = 27; NOHUGEPAGE = 28; MERGEABLE = 29;
    UFFD_MISSING = 30; UFFD_WP = 31; SHADOW_STACK = 32; SEALED = 33;
    LOCKONFAULT = 34; UFFD_MINOR = 35; DROPPABLE = 36; ARM64_BTI = 37; ARM64_MTE = 38;
    GUARD = 39;
}

impl VmFlags {
    pub const fn empty() -> Self {
        VmFlags(0)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn contains(self, other: VmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flag for one mnemonic, e.g. `"gd"`.
    pub fn from_name(name: &str) -> Option<VmFlags> {
        NAMES
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| VmFlags(1 << i))
    }

    /// Parse the value of a `VmFlags:` line. Names this crate does not know (newer kernels
    /// add some) are returned separately so callers can decide whether they matter.
    pub fn parse(list: &[u8]) -> (VmFlags, Vec<String>) {
        let mut flags = VmFlags::empty();
        let mut unknown = Vec::new();
        for name in fields(list) {
            match std::str::from_utf8(name).ok().and_then(VmFlags::from_name) {
                Some(f) => flags = flags | f,
                None => unknown.push(text::lossy(name)),
            }
        }
        (flags, unknown)
    }

    /// The mnemonics of the flags that are set, in table order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, (n, _))| *n)
    }

    /// A short description of one mnemonic, for logs.
    pub fn describe(name: &str) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }
}

impl std::ops::BitOr for VmFlags {
    type Output = VmFlags;
    fn bitor(self, rhs: VmFlags) -> VmFlags {
        VmFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for VmFlags {
    type Output = VmFlags;
    fn bitand(self, rhs: VmFlags) -> VmFlags {
        VmFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for VmFlags {
    /// The same spelling as the kernel's line: `rd wr mr mw me ac`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.names().collect();
        f.write_str(&names.join(" "))
    }
}

/// One area of smaps. Sizes are in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    pub vma: Vma,
    pub vm_flags: VmFlags,
    /// Mnemonics in `VmFlags:` this crate does not know.
    pub unknown_flags: Vec<String>,
    pub rss: u64,
    pub anonymous: u64,
    pub anon_huge_pages: u64,
    pub swap: u64,
    pub locked: u64,
}

pub fn parse_smaps(text: impl AsRef<[u8]>) -> Result<Vec<SmapsEntry>, ParseError> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    let mut saw_flags = true;
    for (n, line) in lines(text.as_ref()) {
        if is_vma_header(line) {
            if !saw_flags {
                return Err(ParseError::new(n, "area before it has no VmFlags line"));
            }
            let vma = parse_vma_line(line, n)?;
            out.push(SmapsEntry {
                vma,
                vm_flags: VmFlags::empty(),
                unknown_flags: Vec::new(),
                rss: 0,
                anonymous: 0,
                anon_huge_pages: 0,
                swap: 0,
                locked: 0,
            });
            saw_flags = false;
            continue;
        }
        let Some(cur) = out.last_mut() else {
            return Err(ParseError::new(
                n,
                format!("expected an area line, found {}", show(line)),
            ));
        };
        let Some((key, value)) = text::key_value(line) else {
            return Err(ParseError::new(
                n,
                format!("unexpected line {}", show(line)),
            ));
        };
        let slot = match key {
            b"VmFlags" => {
                (cur.vm_flags, cur.unknown_flags) = VmFlags::parse(value);
                saw_flags = true;
                continue;
            }
            b"Rss" => &mut cur.rss,
            b"Anonymous" => &mut cur.anonymous,
            b"AnonHugePages" => &mut cur.anon_huge_pages,
            b"Swap" => &mut cur.swap,
            b"Locked" => &mut cur.locked,
            _ => continue,
        };
        *slot = parse_kb(value, n)?;
    }
    if !saw_flags {
        return Err(ParseError::whole("last area has no VmFlags line"));
    }
    Ok(out)
}

/// `"8 kB"` -> 8192.
fn parse_kb(value: &[u8], n: usize) -> Result<u64, ParseError> {
    let num = value.strip_suffix(b" kB").ok_or_else(|| {
        ParseError::new(n, format!("expected a size in kB, found {}", show(value)))
    })?;
    let kb: u64 = text::dec(text::trim(num), n, "size")?;
    Ok(kb * 1024)
}

pub fn read_smaps(pid: i32) -> Result<Vec<SmapsEntry>> {
    read_parsed(pid_path(pid, "smaps"), |b| parse_smaps(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{parse_maps, VmaName};

    const SAMPLE: &str = include_str!("../tests/data/smaps.txt");

    #[test]
    fn parses_captured_smaps() {
        let v = parse_smaps(SAMPLE).unwrap();
        let maps = parse_maps(include_str!("../tests/data/maps.txt")).unwrap();
        assert_eq!(v.iter().map(|e| e.vma.clone()).collect::<Vec<_>>(), maps);
        assert!(v.iter().all(|e| e.unknown_flags.is_empty()));

        let by = |f: &dyn Fn(&SmapsEntry) -> bool| v.iter().find(|e| f(e)).unwrap();
        let stack = by(&|e| e.vma.name == VmaName::Stack);
        assert!(stack
            .vm_flags
            .contains(VmFlags::GROWSDOWN | VmFlags::READ | VmFlags::WRITE));
        assert_eq!(stack.vm_flags.to_string(), "rd wr mr mw me gd ac");

        let vvar = by(&|e| e.vma.name == VmaName::Vvar);
        assert_eq!(
            vvar.vm_flags,
            VmFlags::READ
                | VmFlags::MAYREAD
                | VmFlags::PFNMAP
                | VmFlags::IO
                | VmFlags::DONTEXPAND
                | VmFlags::DONTDUMP
        );

        let wipe = by(&|e| e.vma.perms.exec && e.vma.perms.write);
        assert!(wipe
            .vm_flags
            .contains(VmFlags::WIPEONFORK | VmFlags::RAND_READ));
        let locked = by(&|e| e.vm_flags.contains(VmFlags::LOCKED));
        assert!(locked.vm_flags.contains(VmFlags::DONTCOPY));
        assert_eq!(locked.locked, 4096);
        assert_eq!(locked.rss, 4096);
        let noreserve = by(&|e| e.vm_flags.contains(VmFlags::NORESERVE));
        assert!(noreserve.vm_flags.contains(VmFlags::DONTDUMP));
        assert!(!noreserve.vm_flags.contains(VmFlags::READ));
        let shm = by(&|e| matches!(e.vma.name, VmaName::SysvShm { .. }));
        assert!(shm.vm_flags.contains(VmFlags::SHARED | VmFlags::MAYSHARE));

        let heap = by(&|e| e.vma.name == VmaName::Heap);
        assert_eq!(heap.rss, 8 * 1024); // "Rss: 8 kB" in the sample
        assert_eq!(heap.anonymous, heap.rss);
        assert_eq!(v.last().unwrap().vm_flags, VmFlags::EXEC);
    }

    #[test]
    fn all_requested_mnemonics_are_known() {
        let all = "rd wr ex sh mr mw me ms gd pf dw lo io sr rr dc de ac nr ht sf nl ar wf dd sd mm hg nh mg um uw ss sl";
        let (f, unknown) = VmFlags::parse(all.as_bytes());
        assert!(unknown.is_empty());
        assert_eq!(f.names().count(), 34);
        assert_eq!(f.to_string(), all);
        let (f, unknown) = VmFlags::parse(b"rd zz ex ");
        assert_eq!(f, VmFlags::READ | VmFlags::EXEC);
        assert_eq!(unknown, vec!["zz".to_string()]);
        assert_eq!(VmFlags::describe("gd"), Some("stack grows down"));
    }

    #[test]
    fn broken_smaps() {
        let hdr = "1000-2000 rw-p 00000000 00:00 0\n";
        let e = parse_smaps(format!("{hdr}Rss: 4 kB\n")).unwrap_err();
        assert_eq!(e.to_string(), "last area has no VmFlags line");
        let e = parse_smaps(format!("{hdr}Rss: four kB\nVmFlags: rd\n")).unwrap_err();
        assert_eq!(e.to_string(), "line 2: bad size \"four\"");
        let e = parse_smaps(format!("{hdr}Rss: 4 pages\nVmFlags: rd\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: expected a size in kB, found \"4 pages\""
        );
        let e = parse_smaps("Rss: 4 kB\n").unwrap_err();
        assert!(e.to_string().starts_with("line 1: expected an area line"));
        let e = parse_smaps(format!("{hdr}{hdr}VmFlags: rd\n")).unwrap_err();
        assert_eq!(e.to_string(), "line 2: area before it has no VmFlags line");
    }
}
