//! Which properties (cgroup files) a dump saves: CRIU's defaults per controller, changed by
//! `--cgroup-props` and `--cgroup-props-file` in CRIU's small YAML dialect:
//!
//! ```text
//! "cpu":
//!  - "strategy": "replace"
//!  - "properties": ["cpu.shares", "cpu.cfs_period_us"]
//! ```
//!
//! `merge` adds to a controller's list, `replace` replaces it.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PropsError {
    #[error("cgroup properties: {0}")]
    Syntax(String),
    #[error("cgroup properties: cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Saved in every v1 directory (`cgroup.procs` and `tasks` only for their permissions).
pub const GLOBAL_V1: &[&str] = &[
    "cgroup.clone_children",
    "notify_on_release",
    "cgroup.procs",
    "tasks",
];

/// Saved in every cgroup2 directory.
pub const GLOBAL_V2: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.freeze",
    "cgroup.type",
];

/// Set as soon as a directory is created (they cannot be set once it has tasks or
/// children); every other property is set once the tasks are in.
pub const SPECIAL: &[&str] = &[
    "cpuset.cpus",
    "cpuset.mems",
    "devices.list",
    "memory.kmem.limit_in_bytes",
    "memory.swappiness",
    "memory.oom_control",
    "memory.use_hierarchy",
    "cgroup.type",
];

pub fn is_special(name: &str) -> bool {
    SPECIAL.contains(&name)
}

/// CRIU's built-in lists.
const DEFAULTS: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
    ),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.oom_control",
            "memory.use_hierarchy",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
    ),
    (
        "cpuset",
        &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
    ),
    ("blkio", &["blkio.weight"]),
    ("freezer", &[]),
    ("perf_event", &[]),
    ("net_cls", &["net_cls.classid"]),
    ("net_prio", &["net_prio.ifpriomap"]),
    ("pids", &["pids.max"]),
    ("devices", &["devices.list"]),
];

/// The properties to save per controller name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropTable {
    by_controller: BTreeMap<String, Vec<String>>,
}

impl Default for PropTable {
    fn default() -> Self {
        PropTable {
            by_controller: DEFAULTS
                .iter()
                .map(|(c, p)| (c.to_string(), p.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }
}

impl PropTable {
    /// The defaults, then `stream` (`--cgroup-props`), then the file (`--cgroup-props-file`).
    pub fn new(stream: Option<&str>, file: Option<&std::path::Path>) -> Result<Self, PropsError> {
        let mut t = PropTable::default();
        if let Some(s) = stream {
            t.apply(s)?;
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| PropsError::Io {
                path: path.display().to_string(),
                source,
            })?;
            t.apply(&text)?;
        }
        Ok(t)
    }

    pub fn of(&self, controller: &str) -> &[String] {
        self.by_controller
            .get(controller)
            .map_or(&[][..], Vec::as_slice)
    }

    /// Applies a description in CRIU's YAML dialect.
    pub fn apply(&mut self, text: &str) -> Result<(), PropsError> {
        let mut toks = Tokens::new(text);
        while let Some(name) = toks.next_quoted_opt()? {
            let err = |what: &str| PropsError::Syntax(format!("controller \"{name}\": {what}"));
            toks.symbol(':').map_err(|_| err("expected ':'"))?;
            toks.symbol('-').map_err(|_| err("expected '-'"))?;
            if toks.quoted().map_err(|_| err("expected \"strategy\""))? != "strategy" {
                return Err(err("expected \"strategy\""));
            }
            toks.symbol(':').map_err(|_| err("expected ':'"))?;
            let strategy = toks.quoted().map_err(|_| err("expected a strategy"))?;
            toks.symbol('-').map_err(|_| err("expected '-'"))?;
            if toks.quoted().map_err(|_| err("expected \"properties\""))? != "properties" {
                return Err(err("expected \"properties\""));
            }
            toks.symbol(':').map_err(|_| err("expected ':'"))?;
            toks.symbol('[').map_err(|_| err("expected '['"))?;
            let mut props = Vec::new();
            if !toks.try_symbol(']') {
                loop {
                    props.push(toks.quoted().map_err(|_| err("expected a property name"))?);
                    if toks.try_symbol(']') {
                        break;
                    }
                    toks.symbol(',').map_err(|_| err("expected ',' or ']'"))?;
                }
            }
            match strategy.as_str() {
                "merge" => self.by_controller.entry(name).or_default().extend(props),
                "replace" => {
                    self.by_controller.insert(name, props);
                }
                other => return Err(err(&format!("unknown strategy \"{other}\""))),
            }
        }
        Ok(())
    }
}

struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Tokens { rest: text }
    }

    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn next_quoted_opt(&mut self) -> Result<Option<String>, PropsError> {
        self.skip_ws();
        if self.rest.is_empty() {
            return Ok(None);
        }
        self.quoted().map(Some).map_err(|_| {
            PropsError::Syntax(format!(
                "expected a quoted controller name at {:?}",
                self.rest.lines().next().unwrap_or("")
            ))
        })
    }

    fn quoted(&mut self) -> Result<String, ()> {
        self.skip_ws();
        let body = self.rest.strip_prefix('"').ok_or(())?;
        let end = body.find('"').ok_or(())?;
        if end == 0 {
            return Err(());
        }
        let s = body[..end].to_string();
        self.rest = &body[end + 1..];
        Ok(s)
    }

    fn try_symbol(&mut self, c: char) -> bool {
        self.skip_ws();
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn symbol(&mut self, c: char) -> Result<(), ()> {
        if self.try_symbol(c) {
            Ok(())
        } else {
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let t = PropTable::default();
        assert_eq!(t.of("pids"), ["pids.max"]);
        assert_eq!(t.of("cpuset")[..2], ["cpuset.cpus", "cpuset.mems"]);
        assert!(t.of("freezer").is_empty());
        assert!(t.of("name=systemd").is_empty());
        assert!(t.of("").is_empty());
    }

    #[test]
    fn merge_and_replace() {
        let mut t = PropTable::default();
        t.apply(
            "\"cpu\":\n - \"strategy\": \"replace\"\n - \"properties\": [\"cpu.shares\"]\n\
             \"pids\":\n - \"strategy\": \"merge\"\n - \"properties\": [ \"pids.foo\", \"pids.bar\" ]\n\
             \"hugetlb\":\n - \"strategy\": \"merge\"\n - \"properties\": []\n",
        )
        .unwrap();
        assert_eq!(t.of("cpu"), ["cpu.shares"]);
        assert_eq!(t.of("pids"), ["pids.max", "pids.foo", "pids.bar"]);
        assert!(t.of("hugetlb").is_empty());
    }

    #[test]
    fn errors_name_controller() {
        let mut t = PropTable::default();
        let e = t
            .apply("\"cpu\":\n - \"strategy\": \"swap\"\n - \"properties\": []\n")
            .unwrap_err();
        assert!(e.to_string().contains("swap"), "{e}");
        let e = t.apply("cpu:\n").unwrap_err();
        assert!(e.to_string().contains("controller name"), "{e}");
    }
}
