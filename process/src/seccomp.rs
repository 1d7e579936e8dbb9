//! Seccomp, both halves. Dump: every thread's filter chain goes into one `seccomp.img`
//! (oldest first, each filter naming the one before it with `prev`), the thread's core keeps
//! its mode and its newest filter; threads of a process with identical chains keep one chain
//! on the leader, flagged SECCOMP_FILTER_FLAG_TSYNC, as CRIU does (so that the program's own
//! later TSYNC calls still work). Restore: the thread installs its chain (or strict mode) by
//! injected calls while criu's PTRACE_O_SUSPEND_SECCOMP keeps it from binding until release.

use std::path::Path;
use std::sync::Mutex;

use criu_proto::images::ThreadCoreEntry;
use criu_proto::images::{SeccompEntry, SeccompFilter, SeccompMode};
use criu_proto::{ImageKind, ImageWriter};
use criu_tracee::remote::{Remote, ARG_MAX};

use crate::restore_task::RestoreTaskError;

use crate::dump_thread::ThreadDump;

const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;

/// The filters of one dump, in seccomp.img order.
#[derive(Debug, Default)]
pub struct SeccompImage(Mutex<Vec<SeccompFilter>>);

impl SeccompImage {
    /// Adds a chain given newest first; returns the index of its newest filter.
    fn add(&self, chain: &[criu_tracee::SeccompFilter], extra_flags: u32) -> u32 {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (i, f) in chain.iter().rev().enumerate() {
            let prev = (i > 0).then(|| all.len() as u32 - 1);
            all.push(SeccompFilter {
                filter: f
                    .instructions
                    .iter()
                    .flat_map(|&(code, jt, jf, k)| {
                        let mut b = code.to_le_bytes().to_vec();
                        b.extend([jt, jf]);
                        b.extend(k.to_le_bytes());
                        b
                    })
                    .collect(),
                prev,
                flags: Some(f.flags as u32 | extra_flags),
            });
        }
        all.len() as u32 - 1
    }

    /// Writes seccomp.img when some thread has filters.
    pub fn write(&self, dir: &Path) -> criu_proto::Result<()> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.is_empty() {
            return Ok(());
        }
        let mut w = ImageWriter::create(dir, &ImageKind::SECCOMP, None)?;
        w.write(&SeccompEntry {
            seccomp_filters: all.clone(),
        })?;
        w.finish()?;
        Ok(())
    }
}

/// Puts the seccomp mode and newest filter into each thread's core (leader first), adding the
/// chains to `image`.
pub fn assign(threads: &mut [ThreadDump], image: &SeccompImage) {
    let Some(leader) = threads.first() else {
        return;
    };
    let shared = leader.seccomp.0 == 2
        && threads.iter().all(|t| {
            t.seccomp.0 == 2
                && t.seccomp.1.len() == leader.seccomp.1.len()
                && t.seccomp
                    .1
                    .iter()
                    .zip(&leader.seccomp.1)
                    .all(|(a, b)| a.instructions == b.instructions)
        });
    for (i, t) in threads.iter_mut().enumerate() {
        let (mode, chain) = &t.seccomp;
        let (mode, filter) = match mode {
            1 => (SeccompMode::Strict, None),
            2 if shared && i > 0 => (SeccompMode::Disabled, None),
            2 if shared => (
                SeccompMode::Filter,
                Some(image.add(chain, SECCOMP_FILTER_FLAG_TSYNC)),
            ),
            2 => (SeccompMode::Filter, Some(image.add(chain, 0))),
            _ => (SeccompMode::Disabled, None),
        };
        t.core.seccomp_mode = (mode != SeccompMode::Disabled).then_some(mode as i32);
        t.core.seccomp_filter = filter;
    }
}

/// The chain a thread's core names by its newest filter (`newest`), oldest first.
pub fn chain(
    newest: Option<u32>,
    filters: &[SeccompFilter],
) -> Result<Vec<&SeccompFilter>, String> {
    let mut chain = Vec::new();
    let mut at = newest.ok_or("seccomp filter mode without a filter")?;
    loop {
        let f = filters
            .get(at as usize)
            .ok_or(format!("seccomp.img has no filter {at}"))?;
        chain.push(f);
        match f.prev {
            Some(p) if p < at => at = p,
            Some(p) => return Err(format!("seccomp filter {at} names {p} before it")),
            None => break,
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Puts the thread's seccomp mode back by injected calls. criu seizes with
/// PTRACE_O_SUSPEND_SECCOMP, so the filters bind the thread only once it is released; they
/// go in before the credentials, since installing one may need privileges the task drops.
pub fn restore(
    r: &mut Remote,
    tid: i32,
    core: &ThreadCoreEntry,
    filters: &[SeccompFilter],
) -> Result<(), RestoreTaskError> {
    let task_err = |what: String| RestoreTaskError::Task { pid: tid, what };
    match core.seccomp_mode {
        Some(m) if m == SeccompMode::Strict as i32 => {
            r.call(
                "seccomp(strict)",
                libc::SYS_seccomp,
                &[SECCOMP_SET_MODE_STRICT, 0, 0],
            )?;
        }
        Some(m) if m == SeccompMode::Filter as i32 => {
            for f in chain(core.seccomp_filter, filters).map_err(task_err)? {
                // struct sock_fprog (length, padding, pointer), the instructions after it.
                let mut prog = ((f.filter.len() / 8) as u16).to_le_bytes().to_vec();
                prog.resize(16, 0);
                prog.extend_from_slice(&f.filter);
                if prog.len() > ARG_MAX {
                    return Err(task_err(format!(
                        "a seccomp filter of {} instructions is larger than the scratch area",
                        f.filter.len() / 8
                    )));
                }
                let at = r.arg(&prog)?;
                prog[8..16].copy_from_slice(&(at + 16).to_le_bytes());
                r.arg(&prog)?;
                let flags = u64::from(f.flags.unwrap_or(0));
                r.call(
                    "seccomp(filter)",
                    libc::SYS_seccomp,
                    &[SECCOMP_SET_MODE_FILTER, flags, at],
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filt(k: u32) -> criu_tracee::SeccompFilter {
        criu_tracee::SeccompFilter {
            instructions: vec![(6, 0, 0, k)],
            flags: 0,
        }
    }

    #[test]
    fn chains_are_written_oldest_first_and_read_back_oldest_first() {
        let image = SeccompImage::default();
        // Newest first, as the kernel lists them.
        let newest = image.add(&[filt(3), filt(2), filt(1)], 0);
        let all = image.0.lock().unwrap().clone();
        assert_eq!(newest, 2);
        assert_eq!(all[0].prev, None);
        assert_eq!(all[2].prev, Some(1));
        let ks: Vec<u8> = chain(Some(newest), &all)
            .unwrap()
            .iter()
            .map(|f| f.filter[4])
            .collect();
        assert_eq!(ks, [1, 2, 3]);
        assert!(chain(None, &all).is_err());
        assert!(chain(Some(7), &all).is_err());
    }
}
