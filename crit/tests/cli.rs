//! crit's command line on images written with criu-proto.

use std::path::Path;
use std::process::Command;

use criu_proto::images::*;
use criu_proto::{ImageKind, ImageWriter};

fn crit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write<M: prost::Message>(dir: &Path, kind: &ImageKind, id: Option<u64>, entries: &[M]) {
    let mut w = ImageWriter::create(dir, kind, id).unwrap();
    for e in entries {
        w.write(e).unwrap();
    }
    w.finish().unwrap();
}

fn fown() -> FownEntry {
    FownEntry::default()
}

/// A two-task dump: 10 (sh) with child 11 (sleep).
fn dump_dir(dir: &Path) {
    write(
        dir,
        &ImageKind::PSTREE,
        None,
        &[
            PstreeEntry {
                pid: 10,
                ppid: 0,
                pgid: 10,
                sid: 1,
                threads: vec![10],
            },
            PstreeEntry {
                pid: 11,
                ppid: 10,
                pgid: 10,
                sid: 1,
                threads: vec![11],
            },
        ],
    );
    for (pid, comm) in [(10u64, "sh"), (11, "sleep")] {
        let tc = TaskCoreEntry {
            comm: comm.into(),
            task_state: 1,
            ..Default::default()
        };
        write(
            dir,
            &ImageKind::CORE,
            Some(pid),
            &[CoreEntry {
                mtype: 1,
                tc: Some(tc),
                ..Default::default()
            }],
        );
        write(
            dir,
            &ImageKind::IDS,
            Some(pid),
            &[TaskKobjIdsEntry {
                files_id: pid as u32,
                ..Default::default()
            }],
        );
        write(
            dir,
            &ImageKind::FDINFO,
            Some(pid),
            &[
                FdinfoEntry {
                    id: 1,
                    flags: 0,
                    r#type: FdTypes::Reg as i32,
                    fd: 0,
                    xattr_security_selinux: None,
                },
                FdinfoEntry {
                    id: 2,
                    flags: 0,
                    r#type: FdTypes::Pipe as i32,
                    fd: 1,
                    xattr_security_selinux: None,
                },
                FdinfoEntry {
                    id: 3,
                    flags: 0,
                    r#type: FdTypes::Eventfd as i32,
                    fd: 2,
                    xattr_security_selinux: None,
                },
            ],
        );
        write(
            dir,
            &ImageKind::FS,
            Some(pid),
            &[FsEntry {
                cwd_id: 4,
                root_id: 5,
                umask: None,
            }],
        );
        let vma = |start: u64, end: u64, status: u32, shmid: u64, prot: u32| VmaEntry {
            start,
            end,
            pgoff: 0,
            shmid,
            prot,
            flags: 0x2,
            status,
            fd: -1,
            ..Default::default()
        };
        write(
            dir,
            &ImageKind::MM,
            Some(pid),
            &[MmEntry {
                exe_file_id: 1,
                vmas: vec![
                    vma(0x400000, 0x402000, 1 | (1 << 6), 1, 0x5),
                    vma(0x600000, 0x603000, 1 | (1 << 9), 0, 0x3),
                    vma(0x7ffd0000, 0x7ffd2000, 1 | (1 << 1), 0, 0x3),
                ],
                ..Default::default()
            }],
        );
        let mut pm = ImageWriter::create(dir, &ImageKind::PAGEMAP, Some(pid)).unwrap();
        pm.write(&PagemapHead {
            pages_id: pid as u32,
        })
        .unwrap();
        pm.write(&PagemapEntry {
            vaddr: 0x600000,
            compat_nr_pages: 2,
            nr_pages: Some(2),
            flags: Some(4),
            in_parent: None,
        })
        .unwrap();
        pm.write(&PagemapEntry {
            vaddr: 0x7ffd0000,
            compat_nr_pages: 1,
            nr_pages: Some(1),
            flags: Some(4),
            in_parent: None,
        })
        .unwrap();
        pm.finish().unwrap();
    }
    let reg = |id: u32, name: &str| RegFileEntry {
        id,
        name: name.into(),
        fown: fown(),
        ..Default::default()
    };
    write(
        dir,
        &ImageKind::REG_FILES,
        None,
        &[reg(1, "/bin/sh"), reg(4, "/tmp"), reg(5, "/")],
    );
    write(
        dir,
        &ImageKind::PIPES,
        None,
        &[PipeEntry {
            id: 2,
            pipe_id: 777,
            flags: 0,
            fown: fown(),
        }],
    );
}

#[test]
fn explore_ps_fds_mems_rss() {
    let dir = tempfile::tempdir().unwrap();
    dump_dir(dir.path());
    let d = dir.path().to_str().unwrap();
    if let Ok(keep) = std::env::var("CRIT_SAMPLE_DUMP") {
        std::fs::create_dir_all(&keep).unwrap();
        dump_dir(Path::new(&keep));
    }

    let (ok, ps, err) = crit(&["x", d, "ps"]);
    assert!(ok, "{err}");
    assert_eq!(ps, "    PID   PGID    SID   COMM\n     10     10      1   sh\n     11     10      1       sleep\n");

    let (ok, fds, err) = crit(&["x", d, "fds"]);
    assert!(ok, "{err}");
    let first_task = "10\n\t      0: /bin/sh\n\t      1: pipe[777]\n\t      2: EVENTFD.3\n\t    cwd: /tmp\n\t   root: /\n";
    assert!(fds.starts_with(first_task), "{fds}");

    let (ok, mems, err) = crit(&["x", d, "mems"]);
    assert!(ok, "{err}");
    assert!(
        mems.contains("\t00400000-00402000                   r-x /bin/sh\n"),
        "{mems}"
    );
    assert!(
        mems.contains("\t7ffd0000-7ffd2000                   rw- [stack]\n"),
        "{mems}"
    );

    let (ok, rss, err) = crit(&["x", d, "rss"]);
    assert!(ok, "{err}");
    assert!(
        rss.starts_with(
            "10\n\t600000 / 2              00600000 / 3       \n\t                       \n"
        ),
        "{rss}"
    );
}

#[test]
fn decode_encode_show_info() {
    let dir = tempfile::tempdir().unwrap();
    dump_dir(dir.path());
    let img = dir.path().join("mm-10.img");
    let img = img.to_str().unwrap();
    let json = dir.path().join("mm.json");
    let json = json.to_str().unwrap();
    let back = dir.path().join("back.img");
    let back = back.to_str().unwrap();

    let (ok, out, err) = crit(&["decode", "-i", img]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("{\"magic\": \"MM\", \"entries\": [{\"mm_start_code\": 0,"),
        "{out}"
    );
    assert!(out.ends_with("}]}\n"));

    for pretty in [false, true] {
        let mut args = vec!["decode", "-i", img, "-o", json];
        if pretty {
            args.push("--pretty");
        }
        assert!(crit(&args).0);
        let (ok, _, err) = crit(&["encode", "-i", json, "-o", back]);
        assert!(ok, "{err}");
        assert_eq!(
            std::fs::read(back).unwrap(),
            std::fs::read(img).unwrap(),
            "pretty={pretty}"
        );
    }

    let (ok, show, _) = crit(&["show", img]);
    assert!(ok);
    assert!(
        show.contains("\"start\": \"0x400000\"")
            && show.contains("\"prot\": \"PROT_READ | PROT_EXEC\""),
        "{show}"
    );

    let (ok, info, _) = crit(&["info", &dir.path().join("pagemap-10.img").to_string_lossy()]);
    assert!(ok);
    assert_eq!(
        info,
        "{\n    \"magic\": \"PAGEMAP\",\n    \"count\": 2\n}\n"
    );

    let garbage = dir.path().join("garbage.img");
    std::fs::write(&garbage, b"not an image at all").unwrap();
    let (ok, _, err) = crit(&["decode", "-i", &garbage.to_string_lossy()]);
    assert!(!ok && err.contains("unknown magic"), "{err}");
}
