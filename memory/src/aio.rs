//! AIO rings at restore, inside the task, as CRIU restores them. The dumped ring's pages are
//! back in anonymous memory at the ring's address; a new ring is made with io_setup and set
//! to the same state: its tail moved by requests that complete at once (1-byte writes to
//! /dev/null), its head set, its events copied; then it is moved over the old address, which
//! is also the context id the program holds.

use std::fs::File;
use std::os::unix::fs::FileExt;

use criu_proto::images::{AioRingEntry, MmEntry};
use criu_tracee::remote::{Remote, ARG_AT, ARG_MAX};

use crate::restore::RestoreMemError;

/// `struct aio_ring` header size, and offsets of its fields.
const HEADER: u64 = 32;
const NR_AT: u64 = 4;
const HEAD_AT: u64 = 8;
const TAIL_AT: u64 = 12;
/// `struct iocb` size and IOCB_CMD_PWRITE.
const IOCB: usize = 64;
const IOCB_CMD_PWRITE: u16 = 1;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

pub fn restore_aio_rings(r: &mut Remote, pid: i32, mm: &MmEntry) -> Result<(), RestoreMemError> {
    if mm.aios.is_empty() {
        return Ok(());
    }
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(|source| RestoreMemError::OpenMem { pid, source })?;
    for a in &mm.aios {
        restore_ring(r, pid, &mem, a)?;
    }
    Ok(())
}

fn restore_ring(
    r: &mut Remote,
    pid: i32,
    mem: &File,
    a: &AioRingEntry,
) -> Result<(), RestoreMemError> {
    let err = |what: String| RestoreMemError::Task {
        pid,
        what: format!("AIO ring at {:#x}: {what}", a.id),
    };
    let word = |at: u64| -> Result<u32, RestoreMemError> {
        let mut b = [0u8; 4];
        mem.read_exact_at(&mut b, at)
            .map_err(|e| err(format!("cannot read {at:#x}: {e}")))?;
        Ok(u32::from_le_bytes(b))
    };
    let ctx_at = r.arg(&[0u8; 8])?;
    r.call(
        "io_setup",
        libc::SYS_io_setup,
        &[u64::from(a.nr_req), ctx_at],
    )?;
    let mut b = [0u8; 8];
    r.inj.read_data(ARG_AT, &mut b)?;
    let ctx = u64::from_le_bytes(b);
    let (nr, head, tail) = (
        word(a.id + NR_AT)?,
        word(a.id + HEAD_AT)?,
        word(a.id + TAIL_AT)?,
    );
    let expected = (u64::from(a.ring_len) - HEADER) / 32;
    let new_nr = word(ctx + NR_AT)?;
    if tail >= nr || head >= nr || u64::from(nr) != expected || new_nr != nr {
        return Err(err(format!(
            "head {head}, tail {tail}, {nr} events (expected {expected}); the new ring has {new_nr}"
        )));
    }
    if tail != 0 || head != 0 {
        advance(r, mem, ctx, (nr, head, tail)).map_err(&err)?;
    }
    let mut events = vec![0u8; (u64::from(a.ring_len) - HEADER) as usize];
    mem.read_exact_at(&mut events, a.id + HEADER)
        .map_err(|e| err(format!("cannot read its events: {e}")))?;
    mem.write_all_at(&events, ctx + HEADER)
        .map_err(|e| err(format!("cannot write the new ring's events: {e}")))?;
    let len = u64::from(a.ring_len);
    let got = r.call(
        "mremap(aio ring)",
        libc::SYS_mremap,
        &[ctx, len, len, MREMAP_FIXED | MREMAP_MAYMOVE, a.id],
    )?;
    if got as u64 != a.id {
        return Err(err(format!("the new ring landed at {got:#x}")));
    }
    Ok(())
}

/// Moves the new ring's tail to `tail` by requests that complete at once, consuming events up
/// to `head` as it goes so that the ring never fills (a full turn first when the tail is
/// behind the head, so that the kernel's count of completed events comes out right).
fn advance(
    r: &mut Remote,
    mem: &File,
    ctx: u64,
    (nr, head, tail): (u32, u32, u32),
) -> Result<(), String> {
    let count = u64::from(if tail < head { nr + tail } else { tail });
    let batch = count.min(u64::from(nr) - 1);
    let size = IOCB + 8 + batch as usize * 8;
    if size > ARG_MAX {
        return Err(format!(
            "a ring of {nr} events is larger than the scratch area"
        ));
    }
    let injected = |e: criu_tracee::TraceeError| e.to_string();
    let fd = r
        .open("/dev/null", libc::O_WRONLY | libc::O_CLOEXEC)
        .map_err(injected)?;
    // The scratch holds: one iocb, its 1-byte buffer, then `batch` pointers to the iocb.
    let base = r.arg(&vec![0u8; size]).map_err(injected)?;
    let mut block = vec![0u8; IOCB];
    block[16..18].copy_from_slice(&IOCB_CMD_PWRITE.to_le_bytes());
    block[20..24].copy_from_slice(&(fd as u32).to_le_bytes());
    block[24..32].copy_from_slice(&(base + IOCB as u64).to_le_bytes());
    block[32..40].copy_from_slice(&1u64.to_le_bytes());
    block.extend_from_slice(&[0u8; 8]);
    for _ in 0..batch {
        block.extend_from_slice(&base.to_le_bytes());
    }
    r.arg(&block).map_err(injected)?;
    let pointers = base + IOCB as u64 + 8;
    let mut done = 0u64;
    while done < count {
        let n = r
            .call(
                "io_submit",
                libc::SYS_io_submit,
                &[ctx, (count - done).min(batch), pointers],
            )
            .map_err(injected)? as u64;
        if n == 0 {
            break;
        }
        done += n;
        // Setting the head is what io_getevents would do, without copying the events out.
        let head_now = done.min(u64::from(head)) as u32;
        mem.write_all_at(&head_now.to_le_bytes(), ctx + HEAD_AT)
            .map_err(|e| format!("cannot set the new ring's head: {e}"))?;
    }
    r.close(fd).map_err(injected)?;
    Ok(())
}
