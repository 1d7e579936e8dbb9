//! `criu check` and `criu cpuinfo` through the binary.

use std::process::{Command, Output};

fn criu(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn feature_list_names_every_feature_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["check", "--feature", "list"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let names: Vec<String> = stdout(&out)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for expected in [
        "mnt_id",
        "mem_dirty_track",
        "clone3_set_tid",
        "pagemap_scan",
        "timens",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicates in {names:?}");
}

/// CONFIG_NAME is y or m in /proc/config.gz.
fn enabled(name: &str) -> bool {
    let out = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .expect("zcat /proc/config.gz");
    let key = format!("CONFIG_{name}=");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == format!("{key}y") || l == format!("{key}m"))
}

/// The running kernel is at least major.minor (uname).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = nix::sys::utsname::uname().expect("uname");
    let rel = rel.release().to_string_lossy().into_owned();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// The features a `criu check` run reported missing ("Warn: NAME: ..." or "Error: NAME: ...").
fn reported(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("Warn: ")
                .or_else(|| l.strip_prefix("Error: "))?;
            let (name, _) = rest.split_once(": ")?;
            (!name.contains(' ')).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn single_feature_answers_with_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    // clone3 with set_tid exists since 5.5.
    let out = criu(&["check", "--feature", "clone3_set_tid"], dir.path());
    let want = kernel_at_least(5, 5);
    assert_eq!(out.status.code(), Some(i32::from(!want)), "{out:?}");
    assert_eq!(stdout(&out).contains("clone3_set_tid is supported"), want);
    let out = criu(&["check", "--feature", "mem_dirty_track"], dir.path());
    let want = tracks_memory();
    assert_eq!(out.status.code(), Some(i32::from(!want)), "{out:?}");
    assert_eq!(
        reported(&out).contains(&"mem_dirty_track".to_string()),
        !want
    );
    let out = criu(&["check", "--feature", "no_such_feature"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown feature no_such_feature"));
}

/// Memory changes can be tracked: soft-dirty, or userfaultfd write-protection (with
/// PAGEMAP_SCAN, which kernels with uffd-wp markers have).
fn tracks_memory() -> bool {
    enabled("MEM_SOFT_DIRTY") || enabled("PTE_MARKER_UFFD_WP")
}

/// The base check passes where the kernel has C/R support; `--all` names each missing feature
/// the kernel config says is missing (and no present one), and says "Looks good but ..."
/// exactly when it names any.
#[test]
fn base_check_passes_and_all_reports_missing_extras() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["check"], dir.path());
    if !enabled("CHECKPOINT_RESTORE") {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "Looks good.\n");
    let out = criu(&["check", "--all"], dir.path());
    let missing = reported(&out);
    assert_eq!(
        missing.iter().any(|m| m == "mem_dirty_track"),
        !tracks_memory(),
        "mem_dirty_track: --all reported {missing:?}"
    );
    for (feature, config) in [
        ("net_diag_raw", "INET_RAW_DIAG"),
        ("timens", "TIME_NS"),
        ("autofs", "AUTOFS_FS"),
    ] {
        assert_eq!(
            missing.iter().any(|m| m == feature),
            !enabled(config),
            "{feature} against CONFIG_{config}: --all reported {missing:?}"
        );
    }
    // No compat (32-bit) task support in this build.
    assert!(missing.iter().any(|m| m == "compat_cr"), "{missing:?}");
    assert_eq!(
        out.status.code(),
        Some(i32::from(!missing.is_empty())),
        "{out:?}"
    );
    if missing.is_empty() {
        assert_eq!(stdout(&out), "Looks good.\n");
    } else {
        assert!(stdout(&out).starts_with("Looks good but some kernel features are missing"));
    }
}

#[test]
fn cpuinfo_dump_then_check_on_the_same_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["cpuinfo", "dump", "-D", "."], dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let img = std::fs::read(dir.path().join("cpuinfo.img")).unwrap();
    // CRIU's common magic, then the cpuinfo magic.
    assert_eq!(&img[..8], &[0x19, 0x43, 0x56, 0x54, 0x13, 0x40, 0x40, 0x61]);
    for caps in [
        "--cpu-cap=all",
        "--cpu-cap=cpu",
        "--cpu-cap=ins",
        "--cpu-cap=fpu",
        "--cpu-cap=none",
    ] {
        let out = criu(&["cpuinfo", "check", "-D", ".", caps], dir.path());
        assert_eq!(out.status.code(), Some(0), "{caps}: {out:?}");
    }
}

#[test]
fn cpuinfo_check_without_image_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["cpuinfo", "check", "-D", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cpuinfo.img"),
        "{out:?}"
    );
}

#[test]
fn cpuinfo_check_fails_on_an_image_from_a_richer_cpu() {
    let dir = tempfile::tempdir().unwrap();
    // Every instruction-set bit of CPUID 7.0 EBX set: no CPU has them all.
    let mut rich = criu::cpu::detect::detect().unwrap();
    rich.capability[9] = u32::MAX;
    criu::cpu::image::write(dir.path(), &rich).unwrap();
    let out = criu(
        &["cpuinfo", "check", "-D", ".", "--cpu-cap=ins"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("instruction capabilities"),
        "{out:?}"
    );
    // Checking only the FPU accepts it. Values add to the default (fpu,ins), so clear first.
    let out = criu(
        &["cpuinfo", "check", "-D", ".", "--cpu-cap=none,fpu"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
