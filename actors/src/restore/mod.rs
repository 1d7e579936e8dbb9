//! The restore supervisor: reads every image first, has each task rebuilt by its actor, and
//! releases all tasks together once every one is ready. On any error, every task created so
//! far is killed: nothing half-restored is left.

pub mod images;
pub mod plan;
pub mod rebuild;
pub mod rebuild_files;
pub mod rebuild_memory;
pub mod regular;
pub mod shared;
pub mod task;
pub mod tty;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::TracerPool;
use task::{Adopt, CreateRoot, Die, Fork, Kill, Rebuild, Release, RestoreTask};

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub images_dir: PathBuf,
    pub timeout: Duration,
    /// `--shell-job`: the tree joins criu's session and terminal.
    pub shell_job: bool,
    /// `--restore-sibling`: the root becomes criu's sibling.
    pub sibling: bool,
    pub files: shared::RestoreFileOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {0}")]
    Images(#[from] images::ImagesError),
    #[error("{0}")]
    Task(String),
    #[error("restore: {0}")]
    Unsupported(String),
    #[error("restore: {0}")]
    Shared(#[from] shared::SharedError),
    #[error("restore: {0}")]
    Tty(#[from] tty::TtyError),
}

/// Restores the tree in `req.images_dir`. `before_release` runs (with the root pid) when every
/// task is rebuilt and still stopped, e.g. the post-restore scripts; its error aborts the
/// restore. Returns the root pid; the tree is running.
pub fn run(
    req: &RestoreRequest,
    before_release: impl FnOnce(i32) -> Result<(), String>,
) -> Result<i32, RestoreError> {
    let mut images = images::read(&req.images_dir)?;
    let shell_job = tty::prepare(&mut images, req.shell_job)?;
    let images = Arc::new(images);
    let order = plan::creation_order(&images).map_err(RestoreError::Unsupported)?;
    let mut shared = shared::SharedFiles::create(&images, &req.files)?;
    if let Some(job) = &shell_job {
        job.hand_out(&mut shared)?;
    }
    let shared = Arc::new(shared);
    let sibling = req.sibling;
    let timeout = req.timeout;
    let system = actix::System::new();
    system.block_on(async move {
        let mut pool = TracerPool::for_this_machine();
        let actors: Vec<_> = (0..images.tasks.len())
            .map(|i| {
                let (images, shared) = (images.clone(), shared.clone());
                pool.start(move |_| RestoreTask::new(images, shared, i, timeout))
            })
            .collect();
        let root = images.root().pid();
        let result = async {
            // Tasks come to life in tree order, each made by its parent.
            ask(&actors[0], CreateRoot { sibling }).await?;
            for step in &order {
                ask(&actors[step.parent], Fork { pid: step.pid }).await?;
                ask(&actors[step.child], Adopt).await?;
                if images.tasks[step.child].zombie.is_some() {
                    ask(&actors[step.child], Die).await?;
                }
            }
            // Then every live task rebuilds itself, all at once: `send` queues the message at
            // once, so all actors work while the answers are collected in order.
            let live = actors
                .iter()
                .zip(&images.tasks)
                .filter(|(_, t)| t.zombie.is_none());
            let rebuilds: Vec<_> = live.map(|(a, _)| a.send(Rebuild)).collect();
            let mut first_error = None;
            for r in rebuilds {
                if let Err(e) = r
                    .await
                    .map_err(|e| format!("restore: task actor is gone: {e}"))
                    .and_then(|r| r)
                {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            if let Some(job) = &shell_job {
                job.settle_terminal(root)
                    .map_err(|e| format!("restore: {e}"))?;
            }
            before_release(root)
        }
        .await;
        if let Err(e) = result {
            for a in actors.iter().rev() {
                let _ = a.send(Kill).await;
            }
            return Err(RestoreError::Task(e));
        }
        for (a, _) in actors
            .iter()
            .zip(&images.tasks)
            .filter(|(_, t)| t.zombie.is_none())
        {
            if let Err(e) = ask(a, Release).await {
                tracing::error!("{e}");
            }
        }
        Ok(root)
    })
}

/// Sends a message to a task actor; a dead actor is an error too.
async fn ask<M>(actor: &actix::Addr<RestoreTask>, msg: M) -> Result<(), String>
where
    M: actix::Message<Result = Result<(), String>> + Send + 'static,
    RestoreTask: actix::Handler<M>,
{
    actor
        .send(msg)
        .await
        .map_err(|e| format!("restore: task actor is gone: {e}"))?
}
