//! `criu __mount-helper restore IMAGES_DIR MNT_NS_ID NS_PID [--root PATH] [--external KEY:VAL ...]`:
//! the hidden helper that rebuilds a dumped mount tree. criu is multi-threaded and cannot
//! `setns` into a mount namespace (EINVAL), so the orchestrator execs this single-threaded
//! helper: it joins the mount namespace of NS_PID (the restored root, created with
//! CLONE_NEWNS, so a copy of criu's), its net and ipc namespaces (sysfs and mqueue belong to
//! the mounter's) and its pid namespace for children (proc is mounted for it), then calls
//! `criu_mounts::restore_tree`. Exit 0, or 1 with the error on stderr.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use criu_mounts::MountOptions;
use nix::sched::CloneFlags;

pub const NAME: &str = "__mount-helper";

struct Args {
    dir: PathBuf,
    mnt_ns_id: u32,
    ns_pid: i32,
    opts: MountOptions,
    /// Where the masters of bind-mounted pty slaves go back to criu.
    ptys_fd: Option<i32>,
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let usage = "usage: criu __mount-helper restore IMAGES_DIR MNT_NS_ID NS_PID [--root PATH] [--external KEY:VAL ...] [--auto-external yes] [--device KEY:DEVICE ...] [--ptys-fd FD]";
    let s: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("argument {a:?} is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    if s.len() < 6 || s[2] != "restore" {
        return Err(usage.into());
    }
    let mnt_ns_id = s[4]
        .parse()
        .map_err(|_| format!("bad MNT_NS_ID {}", s[4]))?;
    let ns_pid = s[5].parse().map_err(|_| format!("bad NS_PID {}", s[5]))?;
    let mut opts = MountOptions::default();
    let mut ptys_fd = None;
    let mut rest = s[6..].iter();
    while let Some(a) = rest.next() {
        let val = rest.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--root" => opts.root = Some(PathBuf::from(val)),
            "--external" => {
                let (k, v) = val
                    .split_once(':')
                    .ok_or_else(|| format!("--external {val}: expected KEY:VAL"))?;
                opts.external.push((k.to_owned(), v.to_owned()));
            }
            "--auto-external" => opts.auto_external = val == "yes",
            "--device" => {
                let (k, v) = val
                    .split_once(':')
                    .ok_or_else(|| format!("--device {val}: expected KEY:DEVICE"))?;
                opts.devices.push((k.to_owned(), v.to_owned()));
            }
            "--ptys-fd" => ptys_fd = Some(val.parse().map_err(|_| format!("bad --ptys-fd {val}"))?),
            _ => return Err(format!("unknown argument {a}; {usage}")),
        }
    }
    // Paths are criu's: made absolute before setns moves the working directory.
    let abs = |p: &str| std::fs::canonicalize(p).map_err(|e| format!("{p}: {e}"));
    let dir = abs(&s[3])?;
    if let Some(r) = &opts.root {
        opts.root = Some(abs(&r.to_string_lossy())?);
    }
    for (_, v) in &mut opts.external {
        *v = abs(v)?.to_string_lossy().into_owned();
    }
    Ok(Args {
        dir,
        mnt_ns_id,
        ns_pid,
        opts,
        ptys_fd,
    })
}

fn ns_file(pid: i32, kind: &str) -> Result<(OwnedFd, bool), String> {
    let path = format!("/proc/{pid}/ns/{kind}");
    let theirs = std::fs::metadata(&path).map_err(|e| format!("{path}: {e}"))?;
    let ours = std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .map_err(|e| format!("/proc/self/ns/{kind}: {e}"))?;
    let fd = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok((
        fd.into(),
        theirs.ino() != ours.ino() || theirs.dev() != ours.dev(),
    ))
}

fn join(args: &Args) -> Result<(), String> {
    let pid = args.ns_pid;
    // Every namespace file is opened before the first setns changes what /proc shows.
    let nss = [
        ("net", CloneFlags::CLONE_NEWNET),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ]
    .into_iter()
    .map(|(kind, flag)| ns_file(pid, kind).map(|(fd, differs)| (kind, flag, fd, differs)))
    .collect::<Result<Vec<_>, _>>()?;
    for (kind, flag, fd, differs) in nss {
        if differs {
            nix::sched::setns(fd, flag)
                .map_err(|e| format!("setns into the {kind} namespace of pid {pid}: {e}"))?;
        }
    }
    // setns into a mount namespace puts root and cwd at its root; say so if it did not.
    let root = std::fs::metadata("/").map_err(|e| format!("/: {e}"))?;
    let cwd = std::fs::metadata(".").map_err(|e| format!(".: {e}"))?;
    if (root.dev(), root.ino()) != (cwd.dev(), cwd.ino()) {
        return Err("after setns the working directory is not the namespace's root".into());
    }
    Ok(())
}

/// `open NS_PID MOUNTPOINT DEV`: clones the mount of device DEV (CRIU's encoding) at
/// MOUNTPOINT in that namespace, prints the clone's fd number and holds it until stdin closes
/// (criu takes it with pidfd_getfd meanwhile).
fn open(args: &[OsString]) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let [_, _, _, pid, mp, dev] = args else {
        return Err("usage: criu __mount-helper open NS_PID MOUNTPOINT DEV".into());
    };
    let text = |a: &OsString| a.to_str().unwrap_or_default().to_string();
    let pid: i32 = text(pid).parse().map_err(|_| "bad NS_PID")?;
    let dev: u32 = text(dev).parse().map_err(|_| "bad DEV")?;
    let mp = mp.to_str().ok_or("MOUNTPOINT is not UTF-8")?;
    let fd = criu_mounts::clone_mount_in_ns(pid, mp, dev).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", fd.as_raw_fd())
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

/// Runs the helper; gives the exit code.
pub fn main(args: &[OsString]) -> i32 {
    if args.get(2).is_some_and(|a| a == "open") {
        return match open(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("Error (criu/mount-helper): {e}");
                1
            }
        };
    }
    let res = parse(args).and_then(|a| {
        // Taken before the namespaces change, while the number is surely ours.
        let ptys = a
            .ptys_fd
            .map(|fd| criu_sys::fd::own_inherited(fd).map_err(|e| format!("--ptys-fd {fd}: {e}")))
            .transpose()?;
        join(&a)?;
        let held =
            criu_mounts::restore_tree(&a.dir, a.mnt_ns_id, &a.opts).map_err(|e| e.to_string())?;
        match &ptys {
            Some(sock) => criu_mounts::pty::send(sock, &held).map_err(|e| e.to_string()),
            None if held.is_empty() => Ok(()),
            None => Err("pty masters were made for bind-mounted slaves, with no --ptys-fd".into()),
        }
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error (criu/mount-helper): {e}");
            1
        }
    }
}
