//! `/proc/PID/cgroup` and the names of hierarchies.
//!
//! Each line is `ID:CONTROLLERS:PATH`: `4:cpu,cpuacct:/a` for v1 controllers mounted together,
//! `2:name=systemd:/` for a named v1 hierarchy, `0::/a` for cgroup2, whose controller name
//! is empty (as CRIU records it).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line:?}: not ID:CONTROLLERS:PATH")]
    Line { path: String, line: String },
    #[error(
        "cgroup {name}: the path seen inside the cgroup namespace ({inside}) is not the end of \
         the path criu sees ({outside})"
    )]
    NotSuffix {
        name: String,
        inside: String,
        outside: String,
    },
}

/// One hierarchy a task is in: the controller names as /proc writes them (`cpu,cpuacct`,
/// `name=systemd`, or empty for cgroup2) and the path from the hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub name: String,
    pub path: String,
    /// Length of the path's part above the task's cgroup namespace root (0: none).
    pub cgns_prefix: u32,
}

/// Parses a cgroup file's text (`origin` names it in errors). Members are sorted by name,
/// as CRIU keeps them; `keep` says which controller names are wanted
/// (`--cgroup-dump-controller`).
pub fn parse_cgroup_file(
    origin: &str,
    text: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Member>, ParseError> {
    let mut out: Vec<Member> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let bad = || ParseError::Line {
            path: origin.to_string(),
            line: line.to_string(),
        };
        let (_, rest) = line.split_once(':').ok_or_else(bad)?;
        let (name, path) = rest.split_once(':').ok_or_else(bad)?;
        if !keep(name) {
            continue;
        }
        out.push(Member {
            name: name.to_string(),
            path: path.to_string(),
            cgns_prefix: 0,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets each member's `cgns_prefix` from the same task's cgroups as seen inside its cgroup
/// namespace (`inside`): the part of the path criu sees above the namespace's root, as CRIU
/// computes it (`/foo/bar` seen as `/bar` inside: the prefix is `/foo`, its length 4). A
/// member seen the same from both sides has none.
pub fn set_cgns_prefixes(members: &mut [Member], inside: &[Member]) -> Result<(), ParseError> {
    for m in members.iter_mut() {
        let Some(i) = inside.iter().find(|i| i.name == m.name) else {
            continue;
        };
        if i.path == m.path {
            continue;
        }
        let tail = i.path.strip_prefix('/').unwrap_or(&i.path);
        let not_suffix = || ParseError::NotSuffix {
            name: m.name.clone(),
            inside: i.path.clone(),
            outside: m.path.clone(),
        };
        let at = m
            .path
            .len()
            .checked_sub(tail.len())
            .filter(|&at| m.path.is_char_boundary(at) && m.path[at..] == *tail)
            .ok_or_else(not_suffix)?;
        let mut prefix = at;
        if prefix > 0 && m.path.as_bytes()[prefix - 1] == b'/' {
            prefix -= 1;
        }
        // A prefix of nothing (inside "/x", outside "x") is no namespace root at all.
        if prefix == 0 {
            return Err(not_suffix());
        }
        m.cgns_prefix = prefix as u32;
    }
    Ok(())
}

/// The cgroups of thread `tid` of process `pid`.
pub fn read_thread(
    pid: i32,
    tid: i32,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Member>, ParseError> {
    read_file(
        &Path::new("/proc").join(format!("{pid}/task/{tid}/cgroup")),
        keep,
    )
}

pub fn read_file(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<Member>, ParseError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ParseError::Io {
        path: origin.clone(),
        source,
    })?;
    parse_cgroup_file(&origin, &text, keep)
}

/// The real (not named) controllers of each hierarchy in a cgroup file, in line order: CRIU's
/// list of controllers, which named hierarchies join as sets name them. cgroup2 is `[""]`.
pub fn hierarchies(text: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((names, _)) = rest.split_once(':') else {
            continue;
        };
        if !keep(names) {
            continue;
        }
        let real: Vec<String> = names
            .split(',')
            .filter(|n| !n.starts_with("name="))
            .map(str::to_string)
            .collect();
        // A line of named hierarchies only has nothing real; "" (cgroup2) splits to [""].
        if !real.is_empty() {
            out.push(real);
        }
    }
    out
}

/// Whether the hierarchy of `cnames` is the one a member named `name` is in: every name of
/// the hierarchy is one of `name`'s comma-separated names; cgroup2 (`[""]`) matches only "".
pub fn contains(cnames: &[String], name: &str) -> bool {
    if cnames.len() == 1 && cnames[0].is_empty() {
        return name.is_empty();
    }
    !cnames.is_empty() && cnames.iter().all(|c| name.split(',').any(|n| n == c))
}

/// The directory name CRIU gives a hierarchy in a cgroup yard: the names joined by commas,
/// `name=` dropped, cgroup2 as `unified`.
pub fn yard_dir_name(cnames: &[String]) -> String {
    cnames
        .iter()
        .map(|n| {
            let n = n.strip_prefix("name=").unwrap_or(n);
            if n.is_empty() {
                "unified"
            } else {
                n
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// C's `strtoll(text, NULL, 10) == LLONG_MAX`: a value at or past the largest i64 (CRIU
/// writes such a property as "-1").
pub fn strtoll_is_max(text: &str) -> bool {
    let t = text.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: &str = &digits[..digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len())];
    if neg || digits.is_empty() {
        return false;
    }
    match digits.parse::<i64>() {
        Ok(v) => v == i64::MAX,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "22:name=zdtmtst.defaultroot:/\n21:name=zdtmtst:/sub\n9:name=systemd:/\n\
        8:pids:/criu-test\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/a/b\n3:cpuset:/\n\
        2:cpu,cpuacct:/\n0::/unified-test\n";

    #[test]
    fn parses_and_sorts_by_name() {
        let m = parse_cgroup_file("x", HYBRID, |_| true).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "",
                "blkio",
                "cpu,cpuacct",
                "cpuset",
                "devices",
                "freezer",
                "memory",
                "name=systemd",
                "name=zdtmtst",
                "name=zdtmtst.defaultroot",
                "pids"
            ]
        );
        assert_eq!(m[0].path, "/unified-test");
        assert_eq!(
            m.iter().find(|m| m.name == "pids").unwrap().path,
            "/criu-test"
        );
        let only = parse_cgroup_file("x", HYBRID, |n| n == "pids").unwrap();
        assert_eq!(only.len(), 1);
    }

    #[test]
    fn cgns_prefix_like_criu() {
        let outside = "3:name=zdtmtst:/test\n2:pids:/a/b\n1:memory:/m\n0::/u/v/w\n";
        let inside = "3:name=zdtmtst:/\n2:pids:/b\n1:memory:/m\n0::/v/w\n";
        let mut m = parse_cgroup_file("out", outside, |_| true).unwrap();
        let i = parse_cgroup_file("in", inside, |_| true).unwrap();
        set_cgns_prefixes(&mut m, &i).unwrap();
        let get = |n: &str| m.iter().find(|m| m.name == n).unwrap().cgns_prefix;
        assert_eq!(get("name=zdtmtst"), 5);
        assert_eq!(get("pids"), 2);
        assert_eq!(get("memory"), 0);
        assert_eq!(get(""), 2);
        let mut m = parse_cgroup_file("out", "2:pids:/a/b\n", |_| true).unwrap();
        let bad = parse_cgroup_file("in", "2:pids:/../c\n", |_| true).unwrap();
        let e = set_cgns_prefixes(&mut m, &bad).unwrap_err().to_string();
        assert!(e.contains("/../c") && e.contains("/a/b"), "{e}");
    }

    #[test]
    fn bad_line_names_file() {
        let e = parse_cgroup_file("/proc/1/cgroup", "garbage\n", |_| true).unwrap_err();
        assert!(e.to_string().contains("/proc/1/cgroup"), "{e}");
    }

    #[test]
    fn hierarchies_skip_named() {
        let h = hierarchies(HYBRID, |_| true);
        let flat: Vec<String> = h.iter().map(|c| c.join(",")).collect();
        assert_eq!(
            flat,
            [
                "pids",
                "blkio",
                "freezer",
                "devices",
                "memory",
                "cpuset",
                "cpu,cpuacct",
                ""
            ]
        );
    }

    #[test]
    fn contains_like_criu() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(contains(&s(&["cpu", "cpuacct"]), "cpu,cpuacct"));
        assert!(contains(&s(&["cpu"]), "cpu,cpuacct"));
        assert!(!contains(&s(&["cpuset"]), "cpu,cpuacct"));
        assert!(contains(&s(&[""]), ""));
        assert!(!contains(&s(&[""]), "pids"));
        assert!(!contains(&s(&["pids"]), ""));
        assert!(contains(&s(&["name=systemd"]), "name=systemd"));
        assert_eq!(yard_dir_name(&s(&["name=systemd"])), "systemd");
        assert_eq!(yard_dir_name(&s(&[""])), "unified");
        assert_eq!(yard_dir_name(&s(&["cpu", "cpuacct"])), "cpu,cpuacct");
    }

    #[test]
    fn strtoll_max() {
        assert!(strtoll_is_max("9223372036854775807\n"));
        assert!(strtoll_is_max("99999999999999999999"));
        assert!(!strtoll_is_max("9223372036854771712"));
        assert!(!strtoll_is_max("max"));
        assert!(!strtoll_is_max("-1"));
    }
}
