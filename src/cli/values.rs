//! Parsers for option values, with CRIU's semantics.

/// C `atoi`: optional blanks and sign, then digits; anything else ends the number (0 if none).
pub fn atoi(text: &str) -> i64 {
    let t = text.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// C `strtol(text, NULL, 0)` for a whole word: decimal, `0x` hex, `0` octal, optional sign.
/// Unlike atoi, trailing junk is an error.
pub fn strtol(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (radix, digits) =
        if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, hex)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() {
        return None;
    }
    // Values up to u64::MAX are accepted and wrap, as strtoul-style syscall arguments do.
    let magnitude = u64::from_str_radix(digits, radix).ok()? as i64;
    Some(if neg {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

/// `--ghost-limit`: a number with an optional K, M or G suffix.
pub fn size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.char_indices().last()? {
        (at, 'K' | 'k') => (&text[..at], 10),
        (at, 'M' | 'm') => (&text[..at], 20),
        (at, 'G' | 'g') => (&text[..at], 30),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// CPU capability bits for `--cpu-cap`.
pub mod cpu_cap {
    pub const NONE: u32 = 0;
    pub const FPU: u32 = 1 << 0;
    pub const CPU: u32 = 1 << 1;
    pub const INS: u32 = 1 << 2;
    /// Write the cpuinfo image on dump, read it on restore.
    pub const IMAGE: u32 = 1 << 3;
    pub const ALL: u32 = FPU | CPU | INS;
    pub const DEFAULT: u32 = FPU | INS;
}

/// `--cpu-cap[=LIST]`: comma-separated cpu, fpu, ins, all, none; `^` inverts what follows
/// until the next comma. No value means all. Starts from the current mask.
pub fn cpu_cap(current: u32, value: Option<&str>) -> Result<u32, String> {
    let Some(mut rest) = value else {
        return Ok(current | cpu_cap::ALL | cpu_cap::IMAGE);
    };
    let mut caps = current;
    let mut inverse = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('^') {
            inverse = !inverse;
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix(',') {
            inverse = false;
            rest = r;
            continue;
        }
        let words: [(&str, u32); 4] = [
            ("fpu", cpu_cap::FPU),
            ("all", cpu_cap::ALL),
            ("cpu", cpu_cap::CPU),
            ("ins", cpu_cap::INS),
        ];
        if let Some(r) = rest.strip_prefix("none") {
            caps = if inverse { cpu_cap::ALL } else { cpu_cap::NONE };
            rest = r;
        } else if let Some((word, bits)) = words.iter().find(|(w, _)| rest.starts_with(w)) {
            caps = if inverse { caps & !bits } else { caps | bits };
            rest = &rest[word.len()..];
        } else {
            return Err(format!("Unknown FPU mode `{rest}' selected"));
        }
    }
    if caps != cpu_cap::NONE {
        caps |= cpu_cap::IMAGE;
    }
    Ok(caps)
}

/// `--manage-cgroups[=MODE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    None,
    Props,
    Soft,
    Full,
    Strict,
    Ignore,
}

pub fn cgroup_mode(value: Option<&str>) -> Result<CgroupMode, String> {
    Ok(match value {
        None | Some("soft") => CgroupMode::Soft,
        Some("none") => CgroupMode::None,
        Some("props") => CgroupMode::Props,
        Some("full") => CgroupMode::Full,
        Some("strict") => CgroupMode::Strict,
        Some("ignore") => CgroupMode::Ignore,
        Some(other) => return Err(format!("Unknown cgroups mode `{other}' selected")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_like_c() {
        assert_eq!(atoi("42"), 42);
        assert_eq!(atoi("  -7x"), -7);
        assert_eq!(atoi("erbosity=0"), 0);
        assert_eq!(atoi(""), 0);
    }

    #[test]
    fn strtol_bases() {
        assert_eq!(strtol("10"), Some(10));
        assert_eq!(strtol("0x1f"), Some(31));
        assert_eq!(strtol("010"), Some(8));
        assert_eq!(strtol("0"), Some(0));
        assert_eq!(strtol("-1"), Some(-1));
        assert_eq!(strtol("-0x10"), Some(-16));
        assert_eq!(strtol("12a"), None);
        assert_eq!(strtol("09"), None);
        assert_eq!(strtol(""), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(size("100"), Some(100));
        assert_eq!(size("1K"), Some(1024));
        assert_eq!(size("2M"), Some(2 << 20));
        assert_eq!(size("1G"), Some(1 << 30));
        assert_eq!(size("x"), None);
        assert_eq!(size(""), None);
    }

    #[test]
    fn cpu_cap_modes() {
        use cpu_cap::*;
        assert_eq!(cpu_cap(DEFAULT, None), Ok(ALL | IMAGE));
        assert_eq!(cpu_cap(NONE, Some("fpu")), Ok(FPU | IMAGE));
        assert_eq!(cpu_cap(NONE, Some("cpu,ins")), Ok(CPU | INS | IMAGE));
        assert_eq!(cpu_cap(ALL, Some("^fpu")), Ok(CPU | INS | IMAGE));
        assert_eq!(cpu_cap(ALL, Some("^fpu,cpu")), Ok(CPU | INS | IMAGE));
        assert_eq!(cpu_cap(DEFAULT, Some("none")), Ok(NONE));
        assert_eq!(cpu_cap(DEFAULT, Some("^none")), Ok(ALL | IMAGE));
        assert!(cpu_cap(DEFAULT, Some("bogus")).is_err());
    }

    #[test]
    fn cgroup_modes() {
        assert_eq!(cgroup_mode(None), Ok(CgroupMode::Soft));
        assert_eq!(cgroup_mode(Some("strict")), Ok(CgroupMode::Strict));
        assert!(cgroup_mode(Some("x")).is_err());
    }
}
