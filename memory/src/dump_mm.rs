//! The mm image of a dump (`mm-PID.img`): the layout fields from /proc/PID/stat, brk, the
//! auxiliary vector, the exe file and every VMA.

use criu_procfs::{ProcError, Stat};
use criu_proto::images::MmEntry;

use crate::dump_vmas::DumpVma;

/// What the mm image takes from the task besides /proc: asked through the leader.
pub struct MmState {
    pub brk: u64,
    pub dumpable: i32,
    pub thp_disabled: bool,
    /// The files.img id of the task's executable.
    pub exe_file_id: u32,
}

pub fn mm_entry(pid: i32, stat: &Stat, vmas: &[DumpVma], m: MmState) -> Result<MmEntry, ProcError> {
    let auxv = criu_procfs::read_auxv(pid)?;
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
        vmas: vmas.iter().map(|v| v.entry).collect(),
        dumpable: Some(m.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(m.thp_disabled),
    })
}
