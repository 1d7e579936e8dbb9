//! Shared by the examples: tell the benchmark script this workload is ready, then wait.

/// Writes "ready" to `path`: the script polls for the file before it dumps.
pub fn signal(path: &str) {
    let tmp = format!("{path}.tmp");
    let _ = std::fs::write(&tmp, "ready");
    let _ = std::fs::rename(&tmp, path);
}

/// Sleeps forever; the script kills the process (or criu dumps it).
pub fn wait_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
