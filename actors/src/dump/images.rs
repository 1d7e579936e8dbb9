//! The images of a dump as a whole: pstree, inventory and stats.

use std::collections::BTreeMap;
use std::path::Path;

use criu_proto::images::{
    DumpStatsEntry, InventoryEntry, Lsmtype, PstreeEntry, StatsEntry, TaskKobjIdsEntry,
};
use criu_proto::{ImageKind, ImageWriter, Result};

use super::task::TaskDone;

/// Image format version CRIU writes today (CRTOOLS_IMAGES_V1_1).
const IMAGES_V1_1: u32 = 2;

fn write_all<M: prost_free::Msg>(dir: &Path, kind: &ImageKind, entries: &[M]) -> Result<()> {
    let mut w = ImageWriter::create(dir, kind, None)?;
    for e in entries {
        e.write_to(&mut w)?;
    }
    w.finish()?;
    Ok(())
}

/// Lets the helpers above be generic without naming prost (not a dependency of this crate).
mod prost_free {
    use std::io::Write;

    pub trait Msg {
        fn write_to<W: Write>(&self, w: &mut criu_proto::ImageWriter<W>) -> criu_proto::Result<()>;
    }

    macro_rules! msg {
        ($($t:ty),*) => {$(
            impl Msg for $t {
                fn write_to<W: Write>(&self, w: &mut criu_proto::ImageWriter<W>) -> criu_proto::Result<()> {
                    w.write(self)
                }
            }
        )*};
    }

    use criu_proto::images::*;
    msg!(PstreeEntry, InventoryEntry, StatsEntry);
}

/// One entry per process in pstree order, by the pids the tasks see; the root's parent is
/// written as 0. `parent` maps pids as criu sees them.
pub fn write_pstree(dir: &Path, tasks: &[TaskDone], parent: &BTreeMap<i32, i32>) -> Result<()> {
    let seen: BTreeMap<i32, i32> = tasks.iter().map(|t| (t.host_pid, t.pid)).collect();
    let entries: Vec<PstreeEntry> = tasks
        .iter()
        .map(|t| PstreeEntry {
            pid: t.pid as u32,
            ppid: parent
                .get(&t.host_pid)
                .and_then(|p| seen.get(p))
                .copied()
                .unwrap_or(0) as u32,
            pgid: t.pgid as u32,
            sid: t.sid as u32,
            threads: t.threads.iter().map(|&x| x as u32).collect(),
        })
        .collect();
    write_all(dir, &ImageKind::PSTREE, &entries)
}

/// The LSM CRIU would record for this host.
fn host_lsm() -> Lsmtype {
    let enabled = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().starts_with('Y') || s.trim() == "1")
            .unwrap_or(false)
    };
    if enabled("/sys/module/apparmor/parameters/enabled") {
        Lsmtype::Apparmor
    } else if enabled("/sys/fs/selinux/enforce") || Path::new("/sys/fs/selinux/policy").exists() {
        Lsmtype::Selinux
    } else {
        Lsmtype::NoLsm
    }
}

pub fn write_inventory(
    dir: &Path,
    root_ids: TaskKobjIdsEntry,
    network: &crate::network::NetworkOptions,
    tcp_close: bool,
    root_cg_set: u32,
) -> Result<()> {
    let e = InventoryEntry {
        root_cg_set: Some(root_cg_set),
        img_version: IMAGES_V1_1,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        lsmtype: Some(host_lsm() as i32),
        tcp_close: tcp_close.then_some(true),
        network_lock_method: Some(crate::network::inventory_method(network.method)),
        dump_criu_run_id: Some(network.run_id.clone()),
        plugins_entry: None,
        ..Default::default()
    };
    write_all(dir, &ImageKind::INVENTORY, &[e])
}

pub fn write_stats(dir: &Path, stats: &DumpStatsEntry) -> Result<()> {
    write_all(
        dir,
        &ImageKind::STATS_DUMP,
        &[StatsEntry {
            dump: Some(*stats),
            restore: None,
        }],
    )
}
