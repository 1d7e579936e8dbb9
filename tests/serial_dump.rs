//! `criu dump` of real processes, checked against what /proc and the workloads say: VMAs,
//! registers, page contents, pstree, creds, rlimits, signal actions, files, stats, for one
//! task, its threads and a tree; and upstream crit reading the images. What happens to the
//! tree after a dump is in serial_dump_afterwards.rs.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "../proto/tests/common/upstream.rs"]
mod upstream;
#[macro_use]
#[path = "workloads/src/dump_images.rs"]
mod dump_images;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criu_proto::images::*;
use criu_proto::{ImageKind, ImageReader};
use dump_images::*;
use harness::{bin, require_root, wait_until};

/// Start/end of every VMA as /proc shows it.
fn proc_vmas(pid: i32) -> Vec<(u64, u64, String)> {
    harness::maps(pid)
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let range = w.next().unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let name = l.split_whitespace().nth(5).unwrap_or("").to_string();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
                name,
            )
        })
        .collect()
}

/// Page contents by address from pagemap + pages images.
fn dumped_pages(dir: &Path, pid: i32) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut r = ImageReader::open(dir, &ImageKind::PAGEMAP, Some(pid as u64)).unwrap();
    let head: PagemapHead = r.read().unwrap().unwrap();
    let entries: Vec<PagemapEntry> = r.read_all().unwrap();
    let pages = std::fs::read(dir.join(format!("pages-{}.img", head.pages_id))).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut off = 0usize;
    for e in entries {
        assert_eq!(e.flags, Some(4), "only present pages are written");
        for i in 0..e.nr_pages.unwrap() {
            out.insert(e.vaddr + i * 4096, pages[off..off + 4096].to_vec());
            off += 4096;
        }
    }
    assert_eq!(
        off,
        pages.len(),
        "pages image holds exactly the pagemap's pages"
    );
    out
}

#[test]
fn single_threaded_dump_matches_proc_and_leaves_it_running() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, addr, len, _) = start_state(d, 0, 4);
    let pid = p.pid;
    let maps_before = harness::maps(pid);
    let vmas_before = proc_vmas(pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (pgid, sid): (u32, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());

    let r = criu_dump(pid, d, &["-R"]);
    assert_eq!(
        r.rc,
        0,
        "dump failed: {}\n{}",
        r.stderr,
        std::fs::read_to_string(d.join("dump.log")).unwrap_or_default()
    );

    // Left running, untraced, unchanged.
    assert!(wait_until(Duration::from_secs(2), || tracer_pid(pid) == 0));
    // Back to its sleep (a loaded machine may show it running a moment first).
    assert!(
        wait_until(Duration::from_secs(2), || state(pid) == Some('S')),
        "state {:?}",
        state(pid)
    );
    assert_eq!(harness::maps(pid), maps_before);

    assert!(d.join("inventory.img").exists());
    let inv = one!(d, &ImageKind::INVENTORY, None, InventoryEntry);
    assert_eq!(
        (inv.img_version, inv.fdinfo_per_id, inv.ns_per_id),
        (2, Some(true), Some(true))
    );

    let pstree = read_all!(d, &ImageKind::PSTREE, None, PstreeEntry);
    assert_eq!(pstree.len(), 1);
    assert_eq!(
        (pstree[0].pid, pstree[0].ppid, pstree[0].pgid, pstree[0].sid),
        (pid as u32, 0, pgid, sid)
    );
    assert_eq!(pstree[0].threads, vec![pid as u32]);

    let core = one!(d, &ImageKind::CORE, Some(pid as u64), CoreEntry);
    let ti = core.thread_info.expect("thread_info");
    let g = &ti.gpregs;
    assert_eq!(
        (g.r12, g.r13, g.r14, g.r15),
        (0x1200, 0x1300, 0x1400, 0x1500)
    );
    assert_eq!(g.orig_ax, libc::SYS_pause as u64);
    assert_eq!(ti.fpregs.xmm_space.len(), 64);
    assert_eq!(ti.tls.len(), 3);
    let tc = core.tc.expect("task core");
    assert_eq!(tc.task_state, 1);
    assert_eq!(tc.comm, "dump_state");
    assert_ne!(
        tc.blk_sigset & sig_bit(libc::SIGUSR2),
        0,
        "SIGUSR2 blocked in the main thread"
    );
    let rl = &tc.rlimits.as_ref().unwrap().rlimits;
    assert_eq!(rl.len(), 16);
    assert_eq!(
        (
            rl[libc::RLIMIT_NOFILE as usize].cur,
            rl[libc::RLIMIT_NOFILE as usize].max
        ),
        (777, 4096)
    );
    assert_eq!(tc.sigactions.len(), 62);
    // Entries skip SIGKILL (9) and SIGSTOP (19): SIGUSR1 (10) is at index 8.
    let usr1 = &tc.sigactions[8];
    assert_ne!(usr1.sigaction, 0);
    assert_eq!(usr1.mask, sig_bit(libc::SIGUSR2) | sig_bit(libc::SIGHUP));
    assert_ne!(usr1.flags & libc::SA_RESTART as u64, 0);
    assert_eq!(tc.sigactions[0].sigaction, 0, "SIGHUP left default");
    let timers = tc.timers.as_ref().unwrap();
    assert_eq!((timers.real.isec, timers.real.iusec), (500, 0));
    assert!(
        timers.real.vsec > 900 && timers.real.vsec <= 1000,
        "itimer value {}",
        timers.real.vsec
    );
    let th = core.thread_core.expect("thread core");
    let creds = th.creds.expect("creds");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(vec![creds.uid, creds.euid, creds.suid, creds.fsuid], uids);
    assert_eq!(creds.cap_eff.len(), 2);

    // VMAs: the same areas as /proc (vvar areas as one), the stack at its real start as CRIU
    // records it on this kernel.
    let mm = one!(d, &ImageKind::MM, Some(pid as u64), MmEntry);
    let mut expect: Vec<(u64, u64)> = Vec::new();
    for (s, e, name) in &vmas_before {
        let (s, e) = (*s, *e);
        if name == "[vvar_vclock]" && expect.last().map(|l| l.1) == Some(s) {
            expect.last_mut().unwrap().1 = e;
            continue;
        }
        expect.push((s, e));
    }
    let got: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    assert_eq!(got, expect);
    assert_ne!(mm.exe_file_id, 0);
    assert!(mm.mm_saved_auxv.len() >= 2 && mm.mm_saved_auxv.len() % 2 == 0);

    // Page contents of the pattern area, page for page.
    let pages = dumped_pages(d, pid);
    for i in 0..len / 4096 {
        let page = pages
            .get(&(addr + i * 4096))
            .unwrap_or_else(|| panic!("page {i} of the pattern not dumped"));
        assert_eq!(&page[..8], &i.to_le_bytes());
        assert!(
            page[8..].iter().all(|&b| b == ((i * 7 + 1) % 251) as u8),
            "page {i} content"
        );
    }
    check_stats(d);

    // Files: fd 5 is /etc/hostname at offset 3; 0-2 are /dev/null; fs has the umask.
    let ids = one!(d, &ImageKind::IDS, Some(pid as u64), TaskKobjIdsEntry);
    let fds = read_all!(
        d,
        &ImageKind::FDINFO,
        Some(u64::from(ids.files_id)),
        FdinfoEntry
    );
    assert_eq!(
        fds.iter().map(|f| f.fd).collect::<Vec<_>>(),
        vec![0, 1, 2, 5]
    );
    let files = read_all!(d, &ImageKind::FILES, None, FileEntry);
    let reg = |id: u32| {
        files
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.reg.clone())
            .expect("file entry")
    };
    let f5 = reg(fds[3].id);
    assert_eq!((f5.name.as_str(), f5.pos), ("/etc/hostname", 3));
    assert_eq!(reg(fds[0].id).name, "/dev/null");
    assert_eq!(
        reg(mm.exe_file_id).name,
        bin("dump_state").canonicalize().unwrap().to_string_lossy()
    );
    let fs = one!(d, &ImageKind::FS, Some(pid as u64), FsEntry);
    assert_eq!(fs.umask, Some(0o027));
    assert_eq!(reg(fs.root_id).name, "/");
}

#[test]
fn multithreaded_dump_has_every_thread() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, _, _, tids) = start_state(d, 3, 1);
    for &t in &tids {
        harness::wait_in_syscall(p.pid, t, libc::SYS_pause);
    }
    let r = criu_dump(p.pid, d, &["-R"]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);
    let pstree = one!(d, &ImageKind::PSTREE, None, PstreeEntry);
    let mut want: Vec<u32> = std::iter::once(p.pid)
        .chain(tids.iter().copied())
        .map(|t| t as u32)
        .collect();
    want.sort_unstable();
    assert_eq!(pstree.threads, want, "leader first, then the others by tid");
    let mut seen = BTreeSet::new();
    for &t in &want {
        let core = one!(d, &ImageKind::CORE, Some(u64::from(t)), CoreEntry);
        assert_eq!(
            core.tc.is_some(),
            t == p.pid as u32,
            "only the leader has the task core"
        );
        let g = core.thread_info.unwrap().gpregs;
        assert_eq!(
            (g.r13, g.r14, g.r15),
            (g.r12 + 0x100, g.r12 + 0x200, g.r12 + 0x300)
        );
        seen.insert(g.r12);
        let th = core.thread_core.unwrap();
        let blocked = th.blk_sigset.unwrap() & sig_bit(libc::SIGUSR2) != 0;
        assert_eq!(blocked, t == p.pid as u32, "thread {t} sigmask");
    }
    assert_eq!(seen, (0..=3).map(|k| 0x1200 + k).collect());
    assert!(wait_until(Duration::from_secs(2), || tracer_pid(p.pid) == 0));
    for &t in &tids {
        assert_eq!(harness::tracer(p.pid, t), 0);
        assert_eq!(harness::state(p.pid, t), Some('S'));
    }
}

#[test]
fn tree_dump_has_every_process_with_its_parent_and_group() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ready_file = d.join("ready");
    let p = spawn(Command::new(bin("dump_tree")).arg(&ready_file));
    let w: Vec<i32> = ready(&ready_file)
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    std::fs::remove_file(&ready_file).unwrap();
    let _ = std::fs::remove_file(d.join("ready.g"));
    let (a, b, g) = (w[0], w[1], w[2]);
    for pid in [p.pid, a, b, g] {
        assert!(wait_until(Duration::from_secs(5), || state(pid) == Some('S')));
    }
    let r = criu_dump(p.pid, d, &["-R"]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);
    let pstree = read_all!(d, &ImageKind::PSTREE, None, PstreeEntry);
    let got: Vec<(u32, u32, u32)> = pstree.iter().map(|e| (e.pid, e.ppid, e.pgid)).collect();
    let root = p.pid as u32;
    let root_pgid = pstree[0].pgid;
    assert_eq!(
        got,
        vec![
            (root, 0, root_pgid),
            (a as u32, root, a as u32),
            (g as u32, a as u32, a as u32),
            (b as u32, root, root_pgid)
        ]
    );
    for e in &pstree {
        let core = one!(d, &ImageKind::CORE, Some(u64::from(e.pid)), CoreEntry);
        assert_eq!(core.tc.unwrap().comm, "dump_tree");
        let _ = one!(d, &ImageKind::MM, Some(u64::from(e.pid)), MmEntry);
    }
    // One pages image per task, ids 1..=4.
    for id in 1..=4 {
        assert!(d.join(format!("pages-{id}.img")).exists());
    }
    check_stats(d);
    for pid in [p.pid, a, b, g] {
        assert!(wait_until(Duration::from_secs(2), || tracer_pid(pid) == 0
            && state(pid) == Some('S')));
    }
}

/// The fdinfo entries of a dumped task, by fd.
fn dumped_fds(d: &Path, pid: i32) -> std::collections::BTreeMap<u32, FdinfoEntry> {
    let ids = one!(d, &ImageKind::IDS, Some(pid as u64), TaskKobjIdsEntry);
    read_all!(
        d,
        &ImageKind::FDINFO,
        Some(u64::from(ids.files_id)),
        FdinfoEntry
    )
    .into_iter()
    .map(|e| (e.fd, e))
    .collect()
}

#[test]
fn pipe_shared_by_a_tree_is_one_description_with_its_bytes() {
    require_root();
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // sh holds the read end as fd 0 and its dup as fd 3; its child sleep inherits it as fd 0.
    // setsid(1) execs sh as the leader of its own session, as a dump root must be.
    let mut child = Command::new("setsid")
        .args(["sh", "-c", "exec 3<&0; sleep 100 <&3 & wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = child.stdin.take().unwrap();
    writer.write_all(b"hello").unwrap();
    let p = Proc {
        pid: child.id() as i32,
        child,
    };
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let mut kid = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        kid = harness::descendants(p.pid).get(1).copied().unwrap_or(0);
        kid != 0
            && comm(kid).trim() == "sleep"
            && state(kid) == Some('S')
            && state(p.pid) == Some('S')
    }));
    let r = criu_dump(p.pid, d, &[]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);

    let ino = {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", writer.as_raw_fd()))
            .unwrap()
            .ino() as u32
    };
    let files = read_all!(d, &ImageKind::FILES, None, FileEntry);
    let pipes: Vec<&FileEntry> = files
        .iter()
        .filter(|f| f.pipe.as_ref().is_some_and(|p| p.pipe_id == ino))
        .collect();
    assert_eq!(pipes.len(), 1, "one read-end description: {pipes:?}");
    assert_eq!(pipes[0].r#type, FdTypes::Pipe as i32);
    let pipe = pipes[0].pipe.as_ref().unwrap();
    assert_eq!(pipe.flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
    let (sh, sleep) = (dumped_fds(d, p.pid), dumped_fds(d, kid));
    for e in [&sh[&0], &sh[&3], &sleep[&0]] {
        assert_eq!((e.r#type, e.id), (FdTypes::Pipe as i32, pipe.id));
    }

    let mut img = ImageReader::open(d, &ImageKind::PIPES_DATA, None).unwrap();
    let mut ours = Vec::new();
    while let Some(data) = img.read::<PipeDataEntry>().unwrap() {
        let bytes = img.read_payload(u64::from(data.bytes)).unwrap();
        if data.pipe_id == ino {
            ours.push(bytes);
        }
    }
    assert_eq!(ours, [b"hello"]);
    drop(writer);
}

/// Upstream crit decodes every image of a real dump as we do (plain and --pretty). Upstream
/// crit must be installed (Debian's `criu` package; .ci/run installs it).
#[test]
fn upstream_crit_decodes_every_image_as_we_do() {
    require_root();
    upstream::upstream_crit();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, _, _, _) = start_state(d, 2, 1);
    let r = criu_dump(p.pid, d, &["-R"]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);
    let mut checked = 0;
    let mut bad = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let is_image = name.ends_with(".img") || name == "stats-dump";
        if is_image {
            // Pages and images hold the program's secrets: its owner only.
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(d.join(&name)).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{name} has mode {mode:o}");
        }
        if !is_image || name.starts_with("pages-") {
            continue;
        }
        let bytes = std::fs::read(d.join(&name)).unwrap();
        for pretty in [false, true] {
            let up = match upstream::upstream_decode(&d.join(&name), pretty) {
                Ok(v) => v,
                Err(e) => {
                    bad.push(format!("{name}: upstream crit: {e}"));
                    continue;
                }
            };
            let opts = criu_proto::json::DecodeOptions {
                pretty,
                no_payload: false,
            };
            let ours = criu_proto::json::decode_image(&name, &bytes, opts)
                .unwrap_or_else(|e| panic!("{name}: our decode: {e}"));
            let ours = criu_proto::json::to_python_json(&ours, pretty.then_some(4));
            let diff = upstream::differences(&up, &serde_json::from_str(&ours).unwrap());
            if !diff.is_empty() {
                bad.push(format!(
                    "{name} (pretty={pretty}):\n  {}",
                    diff.join("\n  ")
                ));
            }
        }
        checked += 1;
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(checked >= 10, "only {checked} images");
}
