//! Packet and netlink sockets through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/pk_state.rs) holds packet sockets bound to `lo` with options,
//! memberships, a ring and a fanout group, and netlink sockets bound, joined to groups,
//! unbound and connected; after the restore it checks them all from inside and uses them.
//! In `ring` mode it also maps a packet socket's RX ring, which must come back at its address
//! as that socket's ring.
//! Runs in the nextest `serial` group: the packet sockets make the host's `lo` promiscuous.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use harness::require_root;
use state_task::{Argv, StateTask};

/// Starts pk_state with `args` in `dir`; `own_net`: in a network namespace of its own (with
/// `lo` up), entered by `unshare`, which then execs the workload in the same process.
fn start(own_net: bool, args: &[&str], dir: &tempfile::TempDir) -> StateTask {
    let launch = StateTask::workload("pk_state")
        .argv(Argv::ResultArgs)
        .args(args);
    let launch = if own_net {
        launch.in_own_netns()
    } else {
        launch
    };
    launch.start(dir.path())
}

#[test]
fn packet_and_netlink_sockets_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(false, &[], &dir);
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn packet_and_netlink_sockets_of_a_network_namespace_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(true, &[], &dir);
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn an_option_the_images_cannot_hold_fails_the_dump_and_the_tree_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(false, &["bypass"], &dir);
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    let want = format!("pid {}: fd ", task.pid);
    assert!(
        log.contains(&want) && log.contains("packet socket") && log.contains("PACKET_QDISC_BYPASS"),
        "{log}"
    );
    // Untouched: it still passes its own checks.
    assert_eq!(task.verdict(), "PASS\n");
}

/// The socket mappings (start, end) of `pid`, from /proc/PID/maps.
fn socket_mappings(pid: i32) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("socket:["))
        .map(|l| {
            let (s, e) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_mapped_packet_ring_comes_back_at_its_address_as_the_sockets_ring() {
    use criu_proto::images::{PagemapEntry, PagemapHead};
    use criu_proto::{ImageKind, ImageReader};
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(true, &["ring"], &dir);
    let rings = socket_mappings(task.pid);
    assert_eq!(rings.len(), 1, "the workload maps one ring");
    let (start, end) = rings[0];
    task.dump(&[]);

    // The images record the area as CRIU does: a socket area naming the packet socket's
    // files.img id, whose ring sizes add up to the area, and no pages of it.
    let images_dir = task.dir.join("images");
    let images = criu_proto::dump_images::read(&images_dir).unwrap();
    let t = &images.tasks[0];
    let vma = t.mm.vmas.iter().find(|v| v.start == start).unwrap();
    assert_eq!(vma.end, end);
    let (regular, socket) = (1 << 0, 1 << 11);
    assert_eq!(
        vma.status,
        regular | socket,
        "VMA_AREA_REGULAR | VMA_AREA_SOCKET"
    );
    assert_eq!(vma.flags, libc::MAP_SHARED as u32);
    assert_eq!(vma.prot, (libc::PROT_READ | libc::PROT_WRITE) as u32);
    let psk = images
        .files
        .get(&(vma.shmid as u32))
        .and_then(|f| f.psk.as_ref())
        .expect("shmid names a packet socket of files.img");
    let rx = psk.rx_ring.as_ref().expect("the socket's RX ring");
    assert_eq!(
        u64::from(rx.block_size) * u64::from(rx.block_nr),
        end - start
    );
    assert_eq!(psk.version, 2, "TPACKET_V3");
    let mut r = ImageReader::open(&images_dir, &ImageKind::PAGEMAP, Some(t.pid() as u64)).unwrap();
    let _: PagemapHead = r.read().unwrap().unwrap();
    let runs: Vec<PagemapEntry> = r.read_all().unwrap();
    assert!(
        runs.iter().all(|e| e.vaddr < start || e.vaddr >= end),
        "no pages of the ring are dumped"
    );

    task.restore_ok(&[]);
    assert_eq!(socket_mappings(task.pid), rings);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn a_ring_mapped_without_its_socket_fails_the_dump_naming_the_area() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(true, &["ring-no-fd"], &dir);
    let rings = socket_mappings(task.pid);
    assert_eq!(rings.len(), 1, "the workload maps one ring");
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    let want = format!(
        "pid {}: mapping {:#x}-{:#x}",
        task.pid, rings[0].0, rings[0].1
    );
    assert!(
        log.contains(&want) && log.contains("holds no fd"),
        "{want}\n{log}"
    );
    assert_eq!(task.verdict(), "PASS\n");
}
