//! A tracer thread: one OS thread that owns tracees and runs jobs sent to it. The state `S`
//! (which holds `Tracee`s and so is `!Send`) is created on that thread and never leaves it;
//! other threads and async tasks only send closures and get their results back. This is the
//! shape per-task actors take: ptrace from the wrong thread cannot be written.

use std::sync::mpsc;
use std::thread::JoinHandle;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Handle to a tracer thread; `Send`, so it may be kept anywhere.
pub struct TracerThread<S: 'static> {
    jobs: Option<mpsc::Sender<Job<S>>>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("tracer thread {0} has stopped")]
pub struct ThreadGone(pub String);

impl<S: 'static> TracerThread<S> {
    /// Starts thread `name`, builds its state with `init` there, then serves jobs in order.
    /// When the handle is dropped the thread drops its state (detaching its tracees) and ends.
    pub fn spawn(
        name: &str,
        init: impl FnOnce() -> S + Send + 'static,
    ) -> std::io::Result<TracerThread<S>> {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut state = init();
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })?;
        Ok(TracerThread {
            jobs: Some(tx),
            handle: Some(handle),
        })
    }

    /// Runs `job` on the tracer thread and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, ThreadGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        let name = || {
            self.handle
                .as_ref()
                .and_then(|h| h.thread().name().map(str::to_string))
                .unwrap_or_default()
        };
        let sender = self.jobs.as_ref().ok_or_else(|| ThreadGone(name()))?;
        sender
            .send(Box::new(move |s: &mut S| {
                let _ = tx.send(job(s));
            }))
            .map_err(|_| ThreadGone(name()))?;
        rx.recv().map_err(|_| ThreadGone(name()))
    }
}

impl<S: 'static> Drop for TracerThread<S> {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
