//! Restore half of credentials: groups, ids, capability sets, securebits, no_new_privs, run by
//! injection inside the task while it still has criu's privileges. Uid changes happen with
//! SECBIT_NO_SETUID_FIXUP so they do not touch capabilities; the sets are then cut down to the
//! dumped ones, bounding set first (it needs CAP_SETPCAP), ambient last. Steps that would
//! change nothing are left out (an unprivileged criu may not take them).

use criu_proto::images::CredsEntry;
use criu_tracee::remote::Remote;
use criu_tracee::TraceeError;

const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn cap_word(v: &[u32], i: usize) -> u32 {
    v.get(i).copied().unwrap_or(0)
}

fn has_cap(v: &[u32], cap: u32) -> bool {
    cap_word(v, (cap / 32) as usize) & (1 << (cap % 32)) != 0
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

pub fn restore_creds(r: &mut Remote, c: &CredsEntry) -> Result<(), TraceeError> {
    // What the thread has now (criu's, from its stub): a step that would change nothing is
    // left out, so that an unprivileged criu (no CAP_SETGID, CAP_SETPCAP) restores its own
    // user's tasks. Only in criu's own user namespace: the dumped ids are the task's view,
    // /proc shows criu's, and in another namespace equal numbers are other ids (a stub that
    // is still root outside would stay so), so there every step is taken.
    let tid = r.inj.tracee().tid();
    let unread = |e: String| TraceeError::Unexpected {
        tid,
        what: format!("cannot read its credentials: {e}"),
    };
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let same_ns = user_ns(&tid.to_string()).is_some_and(|ns| Some(ns) == user_ns("self"));
    let mut now = criu_procfs::read_status(tid).map_err(|e| unread(e.to_string()))?;
    if !same_ns {
        // Nothing to compare with: every step differs.
        now.groups = vec![u32::MAX];
        now.uid = [u32::MAX; 4];
        now.cap_bnd = u64::MAX;
    }
    if now.groups != c.groups {
        let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
        let at = r.arg(&groups)?;
        r.call(
            "setgroups",
            libc::SYS_setgroups,
            &[c.groups.len() as u64, at],
        )?;
    }
    let ids_change =
        now.uid != [c.uid, c.euid, c.suid, c.fsuid] || now.gid != [c.gid, c.egid, c.sgid, c.fsgid];
    if ids_change {
        r.call(
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            &[
                libc::PR_SET_SECUREBITS as u64,
                SECBIT_NO_SETUID_FIXUP,
                0,
                0,
                0,
            ],
        )?;
        r.call(
            "setresgid",
            libc::SYS_setresgid,
            &[u64::from(c.gid), u64::from(c.egid), u64::from(c.sgid)],
        )?;
        r.call("setfsgid", libc::SYS_setfsgid, &[u64::from(c.fsgid)])?;
        r.call(
            "setresuid",
            libc::SYS_setresuid,
            &[u64::from(c.uid), u64::from(c.euid), u64::from(c.suid)],
        )?;
        r.call("setfsuid", libc::SYS_setfsuid, &[u64::from(c.fsuid)])?;
    }
    for cap in 0..=last_cap() {
        let held = now.cap_bnd & (1u64 << cap) != 0;
        if held && !has_cap(&c.cap_bnd, cap) {
            r.call(
                "prctl(PR_CAPBSET_DROP)",
                libc::SYS_prctl,
                &[libc::PR_CAPBSET_DROP as u64, u64::from(cap), 0, 0, 0],
            )?;
        }
    }
    let secbits = r.call(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        &[libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0],
    )?;
    if !same_ns || secbits as u64 != u64::from(c.secbits) {
        r.call(
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            &[
                libc::PR_SET_SECUREBITS as u64,
                u64::from(c.secbits),
                0,
                0,
                0,
            ],
        )?;
    }
    // struct __user_cap_header_struct, then two __user_cap_data_struct {eff, prm, inh}.
    let mut block = Vec::with_capacity(8 + 24);
    block.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..2 {
        for set in [&c.cap_eff, &c.cap_prm, &c.cap_inh] {
            block.extend_from_slice(&cap_word(set, i).to_le_bytes());
        }
    }
    let at = r.arg(&block)?;
    r.call("capset", libc::SYS_capset, &[at, at + 8])?;
    for cap in 0..=last_cap() {
        if has_cap(&c.cap_amb, cap) {
            let args = [
                libc::PR_CAP_AMBIENT as u64,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                u64::from(cap),
                0,
                0,
            ];
            r.call("prctl(PR_CAP_AMBIENT_RAISE)", libc::SYS_prctl, &args)?;
        }
    }
    if c.no_new_privs.unwrap_or(0) != 0 {
        r.call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_by_number() {
        let set = [0b1000_0001, 0b10];
        assert!(has_cap(&set, 0));
        assert!(has_cap(&set, 7));
        assert!(!has_cap(&set, 1));
        assert!(has_cap(&set, 33));
        assert!(!has_cap(&set, 64));
    }
}
