//! The restore supervisor: reads every image first, has each task rebuilt by its actor, and
//! releases all tasks together once every one is ready. On any error, every task created so
//! far is killed: nothing half-restored is left.

pub mod images;
pub mod rebuild;
pub mod task;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::TracerPool;
use task::{Kill, Rebuild, Release, RestoreTask};

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub images_dir: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {0}")]
    Images(#[from] images::ImagesError),
    #[error("{0}")]
    Task(String),
    #[error("restore: {0}")]
    Unsupported(String),
}

/// Restores the tree in `req.images_dir`. `before_release` runs (with the root pid) when every
/// task is rebuilt and still stopped, e.g. the post-restore scripts; its error aborts the
/// restore. Returns the root pid; the tree is running.
pub fn run(
    req: &RestoreRequest,
    before_release: impl FnOnce(i32) -> Result<(), String>,
) -> Result<i32, RestoreError> {
    let images = Arc::new(images::read(&req.images_dir)?);
    if images.tasks.len() != 1 {
        return Err(RestoreError::Unsupported(format!(
            "the dump holds {} processes; restoring process trees is not supported yet",
            images.tasks.len()
        )));
    }
    if images.root().cores.len() != 1 {
        return Err(RestoreError::Unsupported("multi-threaded processes are not restored yet".into()));
    }
    let timeout = req.timeout;
    let system = actix::System::new();
    system.block_on(async move {
        let mut pool = TracerPool::for_this_machine();
        let actors: Vec<_> = (0..images.tasks.len())
            .map(|i| {
                let images = images.clone();
                pool.start(move |_| RestoreTask::new(images, i, timeout))
            })
            .collect();
        let mut failure = None;
        let mut root = 0;
        for (i, a) in actors.iter().enumerate() {
            match a.send(Rebuild).await {
                Ok(Ok(pid)) if i == 0 => root = pid,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(e) => failure = Some(format!("restore: task actor is gone: {e}")),
            }
            if failure.is_some() {
                break;
            }
        }
        if failure.is_none() {
            if let Err(e) = before_release(root) {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            for a in &actors {
                let _ = a.send(Kill).await;
            }
            return Err(RestoreError::Task(e));
        }
        for a in &actors {
            match a.send(Release).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("restore: {e}"),
                Err(e) => tracing::error!("restore: task actor is gone: {e}"),
            }
        }
        Ok(root)
    })
}
