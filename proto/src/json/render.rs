//! crit's "pretty" renderings of integer fields: hex, flag names, device numbers, names from
//! small dictionaries, and IP addresses; and the way back from those strings.

use std::net::IpAddr;

use super::text::parse_int;

const MMAP_PROT: &[(&str, u64)] = &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];

const MMAP_FLAGS: &[(&str, u64)] = &[
    ("MAP_SHARED", 0x1),
    ("MAP_PRIVATE", 0x2),
    ("MAP_DROPPABLE", 0x8),
    ("MAP_ANON", 0x20),
    ("MAP_GROWSDOWN", 0x100),
];

const MMAP_STATUS: &[(&str, u64)] = &[
    ("VMA_AREA_NONE", 0),
    ("VMA_AREA_REGULAR", 1 << 0),
    ("VMA_AREA_STACK", 1 << 1),
    ("VMA_AREA_VSYSCALL", 1 << 2),
    ("VMA_AREA_VDSO", 1 << 3),
    ("VMA_AREA_HEAP", 1 << 5),
    ("VMA_FILE_PRIVATE", 1 << 6),
    ("VMA_FILE_SHARED", 1 << 7),
    ("VMA_ANON_SHARED", 1 << 8),
    ("VMA_ANON_PRIVATE", 1 << 9),
    ("VMA_AREA_SYSVIPC", 1 << 10),
    ("VMA_AREA_SOCKET", 1 << 11),
    ("VMA_AREA_VVAR", 1 << 12),
    ("VMA_AREA_AIORING", 1 << 13),
    ("VMA_AREA_MEMFD", 1 << 14),
    ("VMA_AREA_SHSTK", 1 << 15),
    ("VMA_AREA_UPROBES", 1 << 17),
    ("VMA_UNSUPP", 1 << 31),
];

// Octal in the kernel headers; written in hex here.
const RFILE_FLAGS: &[(&str, u64)] = &[
    ("O_WRONLY", 0x1),
    ("O_RDWR", 0x2),
    ("O_CREAT", 0x40),
    ("O_EXCL", 0x80),
    ("O_NOCTTY", 0x100),
    ("O_TRUNC", 0x200),
    ("O_APPEND", 0x400),
    ("O_NONBLOCK", 0x800),
    ("O_DSYNC", 0x1000),
    ("FASYNC", 0x2000),
    ("O_DIRECT", 0x4000),
    ("O_LARGEFILE", 0x8000),
    ("O_DIRECTORY", 0x10000),
    ("O_NOFOLLOW", 0x20000),
    ("O_NOATIME", 0x40000),
    ("O_CLOEXEC", 0x80000),
];

const SEALS_FLAGS: &[(&str, u64)] = &[
    ("F_SEAL_SEAL", 0x1),
    ("F_SEAL_SHRINK", 0x2),
    ("F_SEAL_GROW", 0x4),
    ("F_SEAL_WRITE", 0x8),
    ("F_SEAL_FUTURE_WRITE", 0x10),
];

const PMAP_FLAGS: &[(&str, u64)] = &[
    ("PE_PARENT", 1 << 0),
    ("PE_LAZY", 1 << 1),
    ("PE_PRESENT", 1 << 2),
];

fn flags_map(name: &str) -> Option<&'static [(&'static str, u64)]> {
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        _ => return None,
    })
}

/// (dict, field name) -> value names, as crit's `dict` option uses them.
fn dict_map(dict: &str, field: &str) -> Option<&'static [(i64, &'static str)]> {
    Some(match (dict, field) {
        ("gen", "task_state") => &[(1, "Alive"), (3, "Zombie"), (6, "Stopped")],
        ("sk", "family") => &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
        ("sk", "type") => &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
        ("sk", "state") => &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
        ("sk", "proto") => &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
        _ => return None,
    })
}

/// Python's `"0x%x" % value`.
pub fn hex(value: i128) -> String {
    if value < 0 {
        format!("-0x{:x}", value.unsigned_abs())
    } else {
        format!("0x{value:x}")
    }
}

/// Flag names joined with " | ", unknown bits as a trailing hex number; `None` if the map is
/// not known (crit then shows hex).
pub fn flags_to_text(map: &str, value: i128) -> Option<String> {
    let map = flags_map(map)?;
    let mut parts: Vec<String> = map
        .iter()
        .filter(|(_, bit)| value & i128::from(*bit) != 0)
        .map(|(name, _)| name.to_string())
        .collect();
    let known: i128 = map.iter().map(|(_, bit)| i128::from(*bit)).sum();
    let rest = value & !known;
    if rest != 0 {
        parts.push(hex(rest));
    }
    Some(parts.join(" | "))
}

/// The way back: names and numbers separated by "|", summed as crit does.
pub fn flags_from_text(map: &str, text: &str) -> Option<Result<i128, String>> {
    let map = flags_map(map)?;
    if text.is_empty() {
        return Some(Ok(0));
    }
    let mut sum: i128 = 0;
    for part in text.split('|').map(str::trim) {
        let value = match map.iter().find(|(name, _)| *name == part) {
            Some((_, bit)) => i128::from(*bit),
            None => match parse_int(part) {
                Some(v) => v,
                None => return Some(Err(format!("unknown flag {part:?}"))),
            },
        };
        sum += value;
    }
    Some(Ok(sum))
}

pub fn dict_to_text(dict: &str, field: &str, value: i128) -> Option<&'static str> {
    dict_map(dict, field)?
        .iter()
        .find(|(v, _)| i128::from(*v) == value)
        .map(|(_, name)| *name)
}

pub fn dict_from_text(dict: &str, field: &str, text: &str) -> Option<i128> {
    dict_map(dict, field)?
        .iter()
        .find(|(_, name)| *name == text)
        .map(|(v, _)| i128::from(*v))
}

/// "major:minor"; `old` is glibc's dev_t layout, otherwise the kernel's 20-bit-minor one.
pub fn dev_to_text(value: i128, old: bool) -> String {
    let v = value as u64;
    if old {
        let major = ((v >> 8) & 0xfff) | ((v >> 32) & !0xfff);
        let minor = (v & 0xff) | ((v >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", value >> 20, value & ((1 << 20) - 1))
    }
}

pub fn dev_from_text(text: &str, old: bool) -> Result<i128, String> {
    let mut parts = text
        .split(':')
        .map(|p| parse_int(p).ok_or_else(|| format!("bad device number {text:?}")));
    let (major, minor) = match (parts.next(), parts.next(), parts.next()) {
        (Some(major), Some(minor), None) => (major?, minor?),
        _ => return Err(format!("bad device number {text:?}, expected MAJOR:MINOR")),
    };
    if old {
        let (ma, mi) = (major as u64, minor as u64);
        let dev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
        Ok(i128::from(dev))
    } else {
        Ok((major << 20) | minor)
    }
}

/// An address stored as u32 words in network byte order: one word is IPv4, four are IPv6.
pub fn ip_to_text(words: &[u32]) -> Option<String> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match words.len() {
        1 => Some(format!(
            "{}.{}.{}.{}",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )),
        n if n >= 4 => {
            let groups: Vec<u16> = bytes[..16]
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(ipv6_like_python(&groups))
        }
        _ => None,
    }
}

/// Python's `IPv6Address.compressed`: the first longest run (two or more) of zero groups
/// becomes "::"; no dotted IPv4 tail.
fn ipv6_like_python(groups: &[u16]) -> String {
    let (mut best_start, mut best_len) = (0usize, 0usize);
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_start = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let text = |gs: &[u16]| {
        gs.iter()
            .map(|g| format!("{g:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len > 1 {
        format!(
            "{}::{}",
            text(&groups[..best_start]),
            text(&groups[best_start + best_len..])
        )
    } else {
        text(groups)
    }
}

/// The words of an address written as text.
pub fn ip_from_text(text: &str) -> Result<Vec<u32>, String> {
    let addr: IpAddr = text
        .parse()
        .map_err(|_| format!("bad IP address {text:?}"))?;
    Ok(match addr {
        IpAddr::V4(v4) => vec![u32::from_ne_bytes(v4.octets())],
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_both_ways() {
        assert_eq!(
            flags_to_text("mmap.prot", 0x3).unwrap(),
            "PROT_READ | PROT_WRITE"
        );
        assert_eq!(
            flags_to_text("mmap.flags", 0x22 | 0x4000).unwrap(),
            "MAP_PRIVATE | MAP_ANON | 0x4000"
        );
        assert_eq!(flags_to_text("mmap.status", 0).unwrap(), "");
        assert_eq!(
            flags_from_text("mmap.flags", "MAP_PRIVATE | MAP_ANON | 0x4000")
                .unwrap()
                .unwrap(),
            0x4022
        );
        assert_eq!(flags_from_text("mmap.flags", "").unwrap().unwrap(), 0);
        assert!(flags_to_text("no.such", 1).is_none());
    }

    #[test]
    fn devices_both_ways() {
        assert_eq!(dev_to_text((8 << 20) | 1, false), "8:1");
        assert_eq!(dev_from_text("8:1", false).unwrap(), (8 << 20) | 1);
        // glibc makedev(259, 70000)
        let old = dev_from_text("259:70000", true).unwrap();
        assert_eq!(dev_to_text(old, true), "259:70000");
        assert_eq!(dev_to_text(0x0803, true), "8:3");
    }

    #[test]
    fn ip_like_python() {
        let v4 = ip_from_text("10.0.0.1").unwrap();
        assert_eq!(ip_to_text(&v4).unwrap(), "10.0.0.1");
        for (text, shown) in [
            ("::1", "::1"),
            ("::", "::"),
            ("1:0:0:1::1", "1:0:0:1::1"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("::ffff:1.2.3.4", "::ffff:102:304"),
            ("fe80::1:2", "fe80::1:2"),
        ] {
            assert_eq!(ip_to_text(&ip_from_text(text).unwrap()).unwrap(), shown);
        }
    }
}
