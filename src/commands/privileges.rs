//! Who may run a dump or restore, as CRIU says it: root, or a user that asks for
//! `--unprivileged` and gave criu CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN), e.g. with
//! `setcap cap_checkpoint_restore,cap_sys_ptrace+eip criu`. In that mode criu leaves out
//! what only root may do: cgroups are neither dumped nor restored (as CRIU's).

const CAP_SYS_ADMIN: u32 = 21;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// The effective capability set of criu (`CapEff` of /proc/self/status).
fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Fails when `command` may not run with the privileges criu has.
pub fn check(command: &str, unprivileged: bool) -> Result<(), String> {
    if !unprivileged {
        if nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        return Err(format!(
            "{command}: running as a user other than root needs --unprivileged (and \
             CAP_CHECKPOINT_RESTORE: setcap cap_checkpoint_restore,cap_sys_ptrace+eip criu)"
        ));
    }
    let caps = effective();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_CHECKPOINT_RESTORE) || has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    Err(format!(
        "{command} --unprivileged: criu has neither CAP_CHECKPOINT_RESTORE nor CAP_SYS_ADMIN \
         (setcap cap_checkpoint_restore,cap_sys_ptrace+eip criu)"
    ))
}
