//! Process attributes (robust futex list, THP disabled, membarrier registration, audit login
//! uid), pidfds (of the task itself, of a child, of a dead process), seccomp filters and AIO
//! rings: a workload (pa_attrs, pf_pidfd, sc_filter, ai_ring) sets them up, is dumped and
//! restored by our criu, and checks them from inside. Runs in the nextest `serial` group: the
//! restore claims the task's pid.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use harness::require_root;
use state_task::StateTask;

#[test]
fn robust_list_thp_membarrier_and_loginuid_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("pa_attrs").start(dir.path());
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn pidfds_of_the_task_a_child_and_a_dead_process_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("pf_pidfd").start(dir.path());
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn seccomp_filters_of_one_thread_come_back_and_bind() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("sc_filter").start(dir.path());
    task.dump(&[]);
    assert!(dir.path().join("images/seccomp.img").exists());
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn an_aio_ring_with_an_event_left_in_it_comes_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("ai_ring").start(dir.path());
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}
