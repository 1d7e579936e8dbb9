//! Shared by the examples: make this process a checkpointable root.

/// Starts a new session and closes every fd above stdio inherited from whoever started us
/// (they could be pipes to a terminal that will be gone).
pub fn detach() {
    let _ = nix::unistd::setsid();
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in inherited {
        let _ = nix::unistd::close(fd);
    }
}
