//! Process-wide signal dispositions.

/// Ignores SIGPIPE so that writes to a closed pipe or socket return EPIPE instead of killing us.
pub fn ignore_sigpipe() -> nix::Result<()> {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety concerns arise.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .map(drop)
}
