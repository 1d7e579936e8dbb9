//! Upstream crit (CRIU's own Python tool, /usr/bin/crit from Debian's `criu` package, which
//! .ci/run installs) as the oracle for our JSON: it decodes an image, we decode the same bytes,
//! and the two must agree. Shared by proto/tests/upstream_crit.rs (a sample of every image
//! kind) and tests/serial_dump.rs (the images of a real dump).
//!
//! Debian 12 ships crit 3.17. Later CRIU added fields (and one enum value) that 3.17 does not
//! know; its protobuf library drops them on decode. Those, listed per image below, are the only
//! keys our output may have beyond upstream's; every key upstream prints must be ours too, with
//! the same value.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const UPSTREAM_CRIT: &str = "/usr/bin/crit";

/// Upstream crit's path; panics when it is not installed: the comparison must not pass unseen.
pub fn upstream_crit() -> PathBuf {
    let p = PathBuf::from(UPSTREAM_CRIT);
    assert!(
        p.exists(),
        "upstream crit ({UPSTREAM_CRIT}) is missing: install Debian's criu package \
         (apt-get install criu; .ci/run does)"
    );
    p
}

/// Per image magic: what crit 3.17 does not know, so drops.
const NEWER_THAN_UPSTREAM: &[(&str, &[&str])] = &[
    ("CGROUP", &["is_threaded"]),
    (
        "CORE",
        &[
            "cap_amb",
            "cet",
            "cg_set",
            "membarrier_registration_mask",
            // An enum value 3.17 lacks (RISCV64) drops the field.
            "mtype",
            "no_new_privs",
            "pac_keys",
            "stop_signo",
            "ti_loongarch64",
            "ti_riscv64",
        ],
    ),
    ("CREDS", &["cap_amb", "no_new_privs"]),
    ("FILES", &["pidfd", "pktinfo", "tcp_opts", "tos", "ttl"]),
    ("INETSK", &["pktinfo", "tcp_opts", "tos", "ttl"]),
    (
        "INVENTORY",
        &["allow_uprobes", "dump_criu_run_id", "plugins_entry"],
    ),
    ("MEMFD_INODE", &["mode"]),
    ("NETNS", &["ipv4_sysctl"]),
    // 3.17 names field 2 nr_pages; later CRIU calls it compat_nr_pages and adds a 64-bit
    // nr_pages (field 4). See `upstream_view`.
    ("PAGEMAP", &["compat_nr_pages"]),
];

/// Image kinds crit 3.17 has no handler for: it must fail on them (if it stops failing, they
/// belong in the comparison).
pub const UPSTREAM_CANNOT_DECODE: &[&str] = &[
    "BINFMT_MISC",
    "PIDFD",
    "SIGNAL",
    // criu-rs's own images (CRIU has none for POSIX message queues, for memory tracking
    // without soft-dirty, nor for nested pid namespaces, nor sysctls beyond its lists).
    "POSIX_MQ",
    "POSIX_MQ_FILES",
    "MEM_TRACK",
    "PID_LEVELS",
    "NET_SYSCTLS",
];

/// Upstream's JSON for `path` (`crit decode`, `--pretty` if asked), or its error output.
pub fn upstream_decode(path: &Path, pretty: bool) -> Result<Value, String> {
    let mut cmd = Command::new(upstream_crit());
    cmd.arg("decode");
    if pretty {
        cmd.arg("--pretty");
    }
    let out = cmd.arg("-i").arg(path).output().expect("run upstream crit");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("upstream crit printed no JSON ({e}) for {}", path.display()))
}

/// Our JSON as upstream 3.17 would show it: pagemap's field 2 under its old name.
fn upstream_view(magic: &str, ours: &Value) -> Value {
    let mut v = ours.clone();
    if magic == "PAGEMAP" {
        if let Some(entries) = v.get_mut("entries").and_then(Value::as_array_mut) {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(compat) = e.remove("compat_nr_pages") {
                    e.insert("nr_pages".into(), compat);
                }
            }
        }
    }
    v
}

/// The differences between upstream's JSON and ours for one image (empty when they agree).
pub fn differences(upstream: &Value, ours: &Value) -> Vec<String> {
    let magic = upstream["magic"].as_str().unwrap_or("").to_string();
    let newer: &[&str] = NEWER_THAN_UPSTREAM
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or(&[], |(_, f)| f);
    let mut out = Vec::new();
    walk(
        upstream,
        &upstream_view(&magic, ours),
        newer,
        &magic,
        &mut out,
    );
    out
}

fn walk(up: &Value, ours: &Value, newer: &[&str], path: &str, out: &mut Vec<String>) {
    match (up, ours) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, uv) in u {
                match o.get(k) {
                    Some(ov) => walk(uv, ov, newer, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: upstream has {uv}, we have nothing")),
                }
            }
            for (k, ov) in o {
                if !u.contains_key(k) && !newer.contains(&k.as_str()) {
                    out.push(format!("{path}.{k}: we have {ov}, upstream nothing"));
                }
            }
        }
        (Value::Array(u), Value::Array(o)) if u.len() == o.len() => {
            for (i, (uv, ov)) in u.iter().zip(o).enumerate() {
                walk(uv, ov, newer, &format!("{path}[{i}]"), out);
            }
        }
        _ if up == ours => {}
        _ => out.push(format!("{path}: upstream {up}, ours {ours}")),
    }
}
