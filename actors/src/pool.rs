//! Tracer threads for per-task actors. ptrace answers only the thread that seized a task, so
//! each task actor lives on one actix `Arbiter` (one OS thread with its own event loop) for its
//! whole life. A few arbiters host many actors; a task never moves between them.

use actix::{Actor, Addr, Arbiter, Context};

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

    /// One thread per CPU, at least two so that a blocking wait cannot stall everything.
    pub fn for_this_machine() -> TracerPool {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        TracerPool::new(cpus.max(2))
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
