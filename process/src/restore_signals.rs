//! Restore half of signals that are not handlers: queued signals (shared and per-thread), put
//! back by the task itself while every signal is still blocked, so none is delivered early.

use criu_proto::images::SignalQueueEntry;
use criu_tracee::remote::Remote;
use criu_tracee::TraceeError;

/// `siginfo_t` is 128 bytes; si_signo is its first int.
const SIGINFO_SIZE: usize = 128;

fn signo(info: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes(info[..4].try_into().unwrap_or([0; 4])))
}

/// Queues the process-wide signals of `queue` again.
pub fn queue_shared(
    r: &mut Remote,
    tgid: i32,
    queue: &SignalQueueEntry,
) -> Result<(), TraceeError> {
    for s in &queue.signals {
        if s.siginfo.len() < SIGINFO_SIZE {
            continue;
        }
        let at = r.arg(&s.siginfo[..SIGINFO_SIZE])?;
        r.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            &[tgid as u64, signo(&s.siginfo), at],
        )?;
    }
    Ok(())
}

/// Queues the thread-private signals of `queue` again.
pub fn queue_private(
    r: &mut Remote,
    tgid: i32,
    tid: i32,
    queue: &SignalQueueEntry,
) -> Result<(), TraceeError> {
    for s in &queue.signals {
        if s.siginfo.len() < SIGINFO_SIZE {
            continue;
        }
        let at = r.arg(&s.siginfo[..SIGINFO_SIZE])?;
        r.call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            &[tgid as u64, tid as u64, signo(&s.siginfo), at],
        )?;
    }
    Ok(())
}
