//! Where each hierarchy's root directory is: in a cgroup yard (`--cgroup-yard`, one
//! directory per hierarchy named as CRIU names them), else the host's mount of it (a mount
//! of the hierarchy's root in criu's mount namespace), else a mount criu makes for itself in
//! a private temporary directory (unmounted again when this is dropped).

use std::path::{Path, PathBuf};

use crate::parse::yard_dir_name;

#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    #[error("cgroup hierarchy {name:?}: {what} {path}: {source}")]
    Io {
        name: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup hierarchy {name:?}: cannot mount {fstype} ({data}) at {path}: {source}")]
    Mount {
        name: String,
        fstype: &'static str,
        data: String,
        path: PathBuf,
        source: nix::errno::Errno,
    },
}

#[derive(Debug, Clone)]
struct CgMount {
    v2: bool,
    opts: Vec<String>,
    dir: PathBuf,
}

/// Finds (or makes) each hierarchy's root.
#[derive(Debug, Default)]
pub struct Hierarchies {
    yard: Option<PathBuf>,
    host: Vec<CgMount>,
    found: Vec<(Vec<String>, PathBuf)>,
    /// Mounts criu made: unmounted and removed on drop.
    own: Vec<PathBuf>,
}

impl Hierarchies {
    pub fn new(yard: Option<PathBuf>) -> Hierarchies {
        let host = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| cgroup_mounts(&t))
            .unwrap_or_default();
        Hierarchies {
            yard,
            host,
            found: Vec::new(),
            own: Vec::new(),
        }
    }

    /// The root directory of the hierarchy of `cnames` (`["cpu", "cpuacct"]`,
    /// `["name=systemd"]`, `[""]` for cgroup2).
    pub fn root(&mut self, cnames: &[String]) -> Result<PathBuf, HierarchyError> {
        if let Some((_, p)) = self.found.iter().find(|(c, _)| c == cnames) {
            return Ok(p.clone());
        }
        let dir = match &self.yard {
            Some(yard) => {
                let dir = yard.join(yard_dir_name(cnames));
                if !dir.exists() {
                    self.mount_at(cnames, &dir)?;
                }
                dir
            }
            None => match self.host.iter().find(|m| mount_matches(m, cnames)) {
                Some(m) => m.dir.clone(),
                None => {
                    let dir = std::env::temp_dir().join(format!(
                        ".criu.cgyard.{}.{}",
                        std::process::id(),
                        yard_dir_name(cnames)
                    ));
                    self.mount_at(cnames, &dir)?;
                    dir
                }
            },
        };
        self.found.push((cnames.to_vec(), dir.clone()));
        Ok(dir)
    }

    fn mount_at(&mut self, cnames: &[String], dir: &Path) -> Result<(), HierarchyError> {
        let name = cnames.join(",");
        std::fs::create_dir_all(dir).map_err(|source| HierarchyError::Io {
            name: name.clone(),
            what: "cannot make",
            path: dir.to_path_buf(),
            source,
        })?;
        let v2 = cnames.len() == 1 && cnames[0].is_empty();
        let (fstype, data) = if v2 {
            ("cgroup2", String::new())
        } else if cnames.iter().any(|c| c.starts_with("name=")) {
            ("cgroup", format!("none,{name}"))
        } else {
            ("cgroup", name.clone())
        };
        nix::mount::mount(
            Some("none"),
            dir,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|source| {
            let _ = std::fs::remove_dir(dir);
            HierarchyError::Mount {
                name,
                fstype,
                data: data.clone(),
                path: dir.to_path_buf(),
                source,
            }
        })?;
        tracing::info!("cgroups: mounted {fstype} ({data}) at {}", dir.display());
        self.own.push(dir.to_path_buf());
        Ok(())
    }
}

impl Drop for Hierarchies {
    fn drop(&mut self) {
        for dir in self.own.drain(..).rev() {
            if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("cgroups: cannot unmount {}: {e}", dir.display());
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn mount_matches(m: &CgMount, cnames: &[String]) -> bool {
    if cnames.len() == 1 && cnames[0].is_empty() {
        return m.v2;
    }
    !m.v2 && !cnames.is_empty() && cnames.iter().all(|c| m.opts.iter().any(|o| o == c))
}

/// Mounts of a cgroup hierarchy's root in mountinfo text.
fn cgroup_mounts(text: &str) -> Vec<CgMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || l[3] != "/" {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        out.push(CgMount {
            v2,
            opts: r[2].split(',').map(str::to_string).collect(),
            dir: PathBuf::from(unescape(l[4])),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
33 31 0:30 /sub /mnt/cpusub rw,relatime - cgroup cgroup rw,cpu\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw\n\
42 31 0:39 / /tmp/a\\040b rw - cgroup cgroup rw,cpuset\n";

    #[test]
    fn finds_hierarchy_roots() {
        let m = cgroup_mounts(MI);
        assert_eq!(m.len(), 4);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let find = |c: &[&str]| {
            m.iter()
                .find(|x| mount_matches(x, &s(c)))
                .map(|x| x.dir.clone())
        };
        assert_eq!(find(&["cpu"]), Some("/sys/fs/cgroup/cpu".into()));
        assert_eq!(find(&[""]), Some("/sys/fs/cgroup/unified".into()));
        assert_eq!(
            find(&["name=systemd"]),
            Some("/sys/fs/cgroup/systemd".into())
        );
        assert_eq!(find(&["cpuset"]), Some("/tmp/a b".into()));
        assert_eq!(find(&["memory"]), None);
    }
}
