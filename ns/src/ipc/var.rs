//! The IPC sysctls of ipcns-var: read and written as files under /proc/sys by a thread that
//! joined the namespace (these files act on the caller's IPC namespace).

use std::path::Path;

use criu_proto::images::IpcVarEntry;

use super::Fail;

const MQUEUE: &str = "/proc/sys/fs/mqueue";

fn path(name: &str) -> String {
    format!("/proc/sys/{name}")
}

fn read_values(name: &str) -> Result<Vec<u64>, Fail> {
    let p = path(name);
    let text = criu_procfs::values::read_sysctl(&p).map_err(|e| Fail::sysctl(&p, e))?;
    text.split_whitespace()
        .map(|v| {
            // next_id files read -1 until set: kept as u64::MAX, which the caller drops.
            v.parse::<u64>()
                .or_else(|_| v.parse::<i64>().map(|n| n as u64))
                .map_err(|_| Fail::Bad(format!("{p}: cannot parse {v:?}")))
        })
        .collect()
}

fn read_one(name: &str) -> Result<u64, Fail> {
    match read_values(name)?.as_slice() {
        [v] => Ok(*v),
        other => Err(Fail::Bad(format!(
            "{}: {} values where one was expected",
            path(name),
            other.len()
        ))),
    }
}

fn read_u32(name: &str) -> Result<u32, Fail> {
    let v = read_one(name)?;
    u32::try_from(v).map_err(|_| Fail::Bad(format!("{}: {v} is over 32 bits", path(name))))
}

/// A next_id value, or None while it is -1 (unset; the sysctl refuses -1, so CRIU leaves the
/// field out).
fn read_next_id(name: &str) -> Result<Option<u32>, Fail> {
    let v = read_one(name)? as i64;
    Ok(u32::try_from(v).ok().filter(|v| (*v as i32) >= 0))
}

/// Writes one sysctl; EACCES (a namespace whose sysctls its owner may not write) is skipped,
/// as CRIU does.
pub(super) fn write(name: &str, value: &str) -> Result<(), Fail> {
    let p = path(name);
    match std::fs::write(&p, value) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(()),
        r => r.map_err(|e| Fail::sysctl(&p, e)),
    }
}

pub(super) fn read() -> Result<IpcVarEntry, Fail> {
    let sem = read_values("kernel/sem")?;
    let sem_ctls = sem
        .iter()
        .map(|v| u32::try_from(*v).ok())
        .collect::<Option<Vec<u32>>>()
        .filter(|v| v.len() == 4)
        .ok_or_else(|| Fail::Bad(format!("{}: not 4 values: {sem:?}", path("kernel/sem"))))?;
    let mut var = IpcVarEntry {
        sem_ctls,
        msg_ctlmax: read_u32("kernel/msgmax")?,
        msg_ctlmnb: read_u32("kernel/msgmnb")?,
        msg_ctlmni: read_u32("kernel/msgmni")?,
        auto_msgmni: read_u32("kernel/auto_msgmni")?,
        shm_ctlmax: read_one("kernel/shmmax")?,
        shm_ctlall: read_one("kernel/shmall")?,
        shm_ctlmni: read_u32("kernel/shmmni")?,
        shm_rmid_forced: read_u32("kernel/shm_rmid_forced")?,
        mq_msg_default: Some(0),
        mq_msgsize_default: Some(0),
        msg_next_id: read_next_id("kernel/msg_next_id")?,
        sem_next_id: read_next_id("kernel/sem_next_id")?,
        shm_next_id: read_next_id("kernel/shm_next_id")?,
        ..Default::default()
    };
    // Without mqueue sysctls CRIU writes zeros for them.
    if Path::new(MQUEUE).exists() {
        var.mq_queues_max = read_u32("fs/mqueue/queues_max")?;
        var.mq_msg_max = read_u32("fs/mqueue/msg_max")?;
        var.mq_msgsize_max = read_u32("fs/mqueue/msgsize_max")?;
        var.mq_msg_default = Some(read_u32("fs/mqueue/msg_default")?);
        var.mq_msgsize_default = Some(read_u32("fs/mqueue/msgsize_default")?);
    }
    Ok(var)
}

/// Writes the limits: everything but the next ids and shm_rmid_forced (which destroys
/// unattached segments).
pub(super) fn write_limits(var: &IpcVarEntry) -> Result<(), Fail> {
    if var.sem_ctls.len() != 4 {
        return Err(Fail::Bad(format!(
            "ipcns-var: {} sem_ctls values, expected 4",
            var.sem_ctls.len()
        )));
    }
    let sem = var
        .sem_ctls
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    write("kernel/sem", &sem)?;
    write("kernel/msgmax", &var.msg_ctlmax.to_string())?;
    write("kernel/msgmnb", &var.msg_ctlmnb.to_string())?;
    write("kernel/auto_msgmni", &var.auto_msgmni.to_string())?;
    write("kernel/msgmni", &var.msg_ctlmni.to_string())?;
    write("kernel/shmmax", &var.shm_ctlmax.to_string())?;
    write("kernel/shmall", &var.shm_ctlall.to_string())?;
    write("kernel/shmmni", &var.shm_ctlmni.to_string())?;
    if Path::new(MQUEUE).exists() {
        write("fs/mqueue/queues_max", &var.mq_queues_max.to_string())?;
        write("fs/mqueue/msg_max", &var.mq_msg_max.to_string())?;
        write("fs/mqueue/msgsize_max", &var.mq_msgsize_max.to_string())?;
        if let (Some(msg), Some(size)) = (var.mq_msg_default, var.mq_msgsize_default) {
            write("fs/mqueue/msg_default", &msg.to_string())?;
            write("fs/mqueue/msgsize_default", &size.to_string())?;
        }
    }
    Ok(())
}

/// Writes the next ids the image has (after the objects: creating one resets its kind's).
pub(super) fn write_next_ids(var: &IpcVarEntry) -> Result<(), Fail> {
    for (name, value) in [
        ("kernel/msg_next_id", var.msg_next_id),
        ("kernel/sem_next_id", var.sem_next_id),
        ("kernel/shm_next_id", var.shm_next_id),
    ] {
        if let Some(v) = value {
            write(name, &v.to_string())?;
        }
    }
    Ok(())
}

pub(super) fn write_rmid_forced(value: u32) -> Result<(), Fail> {
    write("kernel/shm_rmid_forced", &value.to_string())
}
