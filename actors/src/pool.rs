//! Tracer threads for per-task actors. ptrace answers only the thread that seized a task, so
//! each task actor lives on one actix `Arbiter` (one OS thread with its own event loop) for its
//! whole life. A few arbiters host many actors; a task never moves between them.

use actix::{Actor, Addr, Arbiter, Context};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

pub struct TracerPool {
    arbiters: Vec<Arbiter>,
    next: usize,
}

impl TracerPool {
    /// `threads` tracer threads (at least one).
    pub fn new(threads: usize) -> TracerPool {
        let arbiters = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        TracerPool { arbiters, next: 0 }
    }

    /// Four threads per CPU: a tracer spends most of its time waiting for its tracee to stop,
    /// so more injections in flight than CPUs keep the CPUs busy (a 1000-task restore took
    /// 4.0 ms per task with one thread per CPU, 2.4 ms with four; eight gained nothing).
    pub fn for_this_machine() -> TracerPool {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        TracerPool::new(cpus * 4)
    }

    /// Four threads per CPU criu may use, each pinned to one of those CPUs round-robin: a
    /// tracee pinned to its tracer's CPU (see `pin_to_this_thread`) answers an injected call
    /// several times faster than one the scheduler wakes elsewhere (BENCHMARKS.md, tracee
    /// engine). For restore, whose tasks are criu's own until released.
    pub fn pinned() -> TracerPool {
        let cpus = allowed_cpus();
        let mut pool = TracerPool::new(cpus.len() * 4);
        for (i, arbiter) in pool.arbiters.iter_mut().enumerate() {
            let cpu = cpus[i % cpus.len()];
            arbiter.spawn_fn(move || {
                let mut one = CpuSet::new();
                if one.set(cpu).is_ok() {
                    let _ = sched_setaffinity(Pid::from_raw(0), &one);
                }
            });
        }
        pool
    }

    /// Starts an actor on the next tracer thread; `make` runs on that thread, so the actor may
    /// own `!Send` tracees created there.
    pub fn start<A, F>(&mut self, make: F) -> Addr<A>
    where
        A: Actor<Context = Context<A>>,
        F: FnOnce(&mut Context<A>) -> A + Send + 'static,
    {
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        A::start_in_arbiter(&arbiter.handle(), make)
    }
}

impl Drop for TracerPool {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters.drain(..) {
            let _ = a.join();
        }
    }
}

/// The CPUs the calling thread may run on (at least one entry).
pub fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).unwrap_or_else(|_| CpuSet::new());
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// Pins task `tid` to the CPUs of the calling (tracer) thread.
pub fn pin_to_this_thread(tid: i32) {
    if let Ok(mine) = sched_getaffinity(Pid::from_raw(0)) {
        let _ = sched_setaffinity(Pid::from_raw(tid), &mine);
    }
}
