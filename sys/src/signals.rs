//! Process-wide signal dispositions.

/// Ignores SIGPIPE so that writes to a closed pipe or socket return EPIPE instead of killing us.
pub fn ignore_sigpipe() -> nix::Result<()> {
    ignore(nix::sys::signal::Signal::SIGPIPE)
}

/// Ignores what a terminal sends (SIGINT, SIGHUP), SIGTERM and SIGPIPE: for criu's helper
/// processes, which must outlive a Ctrl-C meant for criu.
pub fn ignore_terminal_signals() {
    use nix::sys::signal::Signal;
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        let _ = ignore(sig);
    }
}

/// Ignores `sig` process-wide.
pub fn ignore(sig: nix::sys::signal::Signal) -> nix::Result<()> {
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety concerns arise.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) }.map(drop)
}
