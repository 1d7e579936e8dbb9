//! The dump's checksums: a restore from images with one flipped byte (in the pages, or in
//! any other image) fails before any task exists, naming the file; the same images repaired
//! restore. Images without a manifest (CRIU's) still restore.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use harness::require_root;
use state_task::StateTask;

fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_is_named_before_any_task_exists() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::start(dir.path());
    task.dump(&[]);
    let images = dir.path().join("images");
    let manifest = std::fs::read_to_string(images.join("images.xxh128")).unwrap();
    assert!(manifest.contains("  pages-1.img\n") && manifest.contains("  inventory.img\n"));
    for (name, at) in [("pages-1.img", 40_000), ("core-", 30)] {
        let file = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(name))
            .unwrap();
        flip(&images.join(&file), at);
        let out = task.restore(&[]);
        let said = task.said(&out, "restore.log");
        assert!(!out.status.success(), "a damaged {file} restored");
        assert!(said.contains(&format!("{file} is damaged")), "{said}");
        assert!(!task.alive(), "a task was made from damaged images");
        flip(&images.join(&file), at);
    }
    let out = task.restore(&[]);
    task.assert_ok(&out, "restore");
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn images_without_a_manifest_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::start(dir.path());
    task.dump(&[]);
    std::fs::remove_file(dir.path().join("images/images.xxh128")).unwrap();
    let out = task.restore(&[]);
    task.assert_ok(&out, "restore");
    assert!(task
        .log("restore.log")
        .contains("the images are not checked"));
    assert_eq!(task.verdict(), "PASS\n");
}
