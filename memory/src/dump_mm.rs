//! The mm image of a dump (`mm-PID.img`): the layout fields from /proc/PID/stat, brk, the
//! auxiliary vector, the exe file and every VMA.

use std::os::unix::fs::FileExt;

use criu_procfs::{ProcError, Stat};
use criu_proto::images::{AioRingEntry, MmEntry, VmaEntry};

use crate::dump_vmas::DumpVma;
use crate::vma::{PAGE_SIZE, VMA_AREA_AIORING, VMA_AREA_GUARD};

#[derive(Debug, thiserror::Error)]
pub enum MmError {
    #[error("pid {pid}: cannot read {what}: {source}")]
    Proc {
        pid: i32,
        what: &'static str,
        source: ProcError,
    },
    #[error("pid {pid}: AIO ring at {start:#x}: {what}")]
    Aio { pid: i32, start: u64, what: String },
}

/// `struct aio_ring` (the ring's header) and `struct io_event` sizes, and the header's magic.
const AIO_RING_HEADER: u64 = 32;
const IO_EVENT: u64 = 32;
const AIO_RING_MAGIC: u32 = 0xa10a_10a1;

/// What the mm image takes from the task besides /proc: asked through the leader.
pub struct MmState {
    pub brk: u64,
    pub dumpable: i32,
    pub thp_disabled: bool,
    /// The files.img id of the task's executable.
    pub exe_file_id: u32,
    /// Ranges made guards with MADV_GUARD_INSTALL (see `dump_pages::scan`): recorded as CRIU
    /// does, as entries of their own with status VMA_AREA_GUARD after every real area.
    pub guards: Vec<(u64, u64)>,
}

pub fn mm_entry(pid: i32, stat: &Stat, vmas: &[DumpVma], m: MmState) -> Result<MmEntry, MmError> {
    let auxv = criu_procfs::read_auxv(pid).map_err(|source| MmError::Proc {
        pid,
        what: "auxv",
        source,
    })?;
    Ok(MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: m.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: m.exe_file_id,
        mm_saved_auxv: auxv
            .iter()
            .flat_map(|&(k, v)| [k, v])
            .chain([0, 0])
            .collect(),
        vmas: vmas
            .iter()
            .map(|v| v.entry)
            .chain(m.guards.iter().map(|&(start, end)| VmaEntry {
                start,
                end,
                status: VMA_AREA_GUARD,
                fd: -1,
                ..Default::default()
            }))
            .collect(),
        dumpable: Some(m.dumpable),
        aios: aio_rings(pid, vmas)?,
        thp_disabled: Some(m.thp_disabled),
    })
}

/// The AIO rings of the task, as CRIU records them: the ring's address (the context id), its
/// length, and the request count io_setup was given, found back from the ring's size as the
/// kernel computes it (events = 2 * max(nr, 4 * cpus) + 2, rounded up to whole pages). The
/// ring header is checked as CRIU does: a ring whose header is not the kernel's is refused.
fn aio_rings(pid: i32, vmas: &[DumpVma]) -> Result<Vec<AioRingEntry>, MmError> {
    let mut out = Vec::new();
    for v in vmas
        .iter()
        .filter(|v| v.entry.status & VMA_AREA_AIORING != 0)
    {
        let (start, len) = (v.entry.start, v.entry.end - v.entry.start);
        let err = |what: String| MmError::Aio { pid, start, what };
        let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
            .map_err(|e| err(format!("cannot open /proc/{pid}/mem: {e}")))?;
        let mut head = [0u8; AIO_RING_HEADER as usize];
        mem.read_exact_at(&mut head, start)
            .map_err(|e| err(format!("cannot read its header: {e}")))?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let events = (len - AIO_RING_HEADER) / IO_EVENT;
        let (nr, magic, header_len) = (word(4), word(16), word(28));
        if magic != AIO_RING_MAGIC
            || u64::from(header_len) != AIO_RING_HEADER
            || u64::from(nr) != events
        {
            return Err(err(format!(
                "not a ring of this kernel (magic {magic:#x}, header {header_len}, nr {nr})"
            )));
        }
        if !len.is_multiple_of(PAGE_SIZE) || events < 2 {
            return Err(err(format!("odd ring size {len}")));
        }
        out.push(AioRingEntry {
            id: start,
            nr_req: ((events - 2) / 2) as u32,
            ring_len: len as u32,
        });
    }
    Ok(out)
}
