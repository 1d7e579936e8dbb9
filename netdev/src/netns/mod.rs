//! What a network namespace holds besides its devices: its sysctls (`netns-N.img` as CRIU
//! keeps them), its addresses, routes and rules (`ip ... save` output) and its firewall
//! (`iptables-save`/`ip6tables-save` output and the nftables ruleset), the last two as raw
//! images, as CRIU's. Every function works on the calling thread's network namespace (the
//! caller joins the tree's first; the tools it runs inherit it).

pub mod firewall;
pub mod iproute;
pub mod more_sysctls;
pub mod sysctl;

use std::io::{Seek, Write};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{cmd}: cannot run: {source} (is it installed?)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd}: exited with {status}: {stderr}")]
    Failed {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Runs `program` with `args`, `input` on its stdin; its stdout.
fn run(program: &str, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
    let cmd = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let spawn = |source| ToolError::Spawn {
        cmd: cmd.clone(),
        source,
    };
    // `ip ... restore` seeks in its input: it gets a file, not a pipe.
    let stdin = match input {
        Some(data) => {
            let fd = criu_sys::shmem::memfd("criu-tool-input", 0).map_err(spawn)?;
            let mut f = std::fs::File::from(fd);
            f.write_all(data).map_err(spawn)?;
            f.seek(std::io::SeekFrom::Start(0)).map_err(spawn)?;
            Stdio::from(f)
        }
        None => Stdio::null(),
    };
    let out = Command::new(program)
        .args(args)
        .stdin(stdin)
        .output()
        .map_err(spawn)?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}
