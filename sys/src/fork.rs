//! fork(2), for the programs that build process trees (benchmarks, test workloads).

/// Forks; returns 0 in the child and the child's pid in the parent. Refused unless the caller
/// is single-threaded: only then is the child's copy of the allocator and locks consistent.
pub fn fork_single_threaded() -> std::io::Result<i32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim);
    if threads != Some("1") {
        return Err(std::io::Error::other(
            "fork refused: the process has more than one thread",
        ));
    }
    // SAFETY: the process has one thread (checked above), so no lock can be held by a thread
    // that the child would lack.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid)
}
