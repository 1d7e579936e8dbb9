//! The few calls the orchestrator makes into this crate, around the per-kind modules.

use std::collections::BTreeSet;
use std::path::Path;

use criu_proto::dump_images::DumpImages;
use criu_proto::images::FileEntry;
use criu_proto::{ImageKind, ImageWriter};

use crate::ghost::restore::{GhostError, Remaps};
use crate::pipes::dump::PipeData;
use crate::registry::{RestoreFileOptions, SharedError, SharedFiles};
use crate::table::{FileTable, FilesError};
use crate::tty::restore::{ShellJob, TtyError};

/// Dump, after every task is collected: the images the tasks' files share. `tree` holds every
/// pid of the dump; `write_back_tty`: the tasks live on, so bytes taken from their terminals
/// are put back.
pub fn write_images(
    table: &mut FileTable,
    dir: &Path,
    tree: &BTreeSet<i32>,
    write_back_tty: bool,
) -> Result<(), FilesError> {
    crate::pidfd::dump::verify(&table.pidfds, tree)?;
    crate::unix::dump::finish(table, dir)?;
    crate::inet::dump::finish(table, dir)?;
    crate::tty::dump::verify(&table.ttys)?;
    write_files(dir, table.entries())?;
    crate::tty::dump_info::write_tty_info(dir, &table.ttys)?;
    crate::tty::dump_info::dump_queued_data(dir, &table.ttys, write_back_tty)?;
    crate::locks::dump::write_file_locks(dir, &table.locks)?;
    write_pipes_data(dir, table.pipe_data())?;
    crate::fifo::dump::write_fifo_data(dir, &table.fifos)?;
    crate::memfd::dump::write_inodes(dir, &table.memfds)?;
    crate::mqueue::dump::write(dir, &table.mqueues)?;
    table.remaps.write(dir)?;
    Ok(())
}

fn write_files(dir: &Path, entries: &[FileEntry]) -> criu_proto::Result<()> {
    let mut w = ImageWriter::create(dir, &ImageKind::FILES, None)?;
    for e in entries {
        w.write(e)?;
    }
    w.finish()?;
    Ok(())
}

/// Each pipe's bytes after its entry; written even when empty, as CRIU does.
fn write_pipes_data(dir: &Path, pipes: &[PipeData]) -> criu_proto::Result<()> {
    let mut w = ImageWriter::create(dir, &ImageKind::PIPES_DATA, None)?;
    for p in pipes {
        w.write(&p.entry())?;
        w.write_payload(&p.bytes)?;
    }
    w.finish()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreFilesError {
    #[error(transparent)]
    Shared(#[from] SharedError),
    #[error(transparent)]
    Tty(#[from] TtyError),
    #[error(transparent)]
    Ghost(#[from] GhostError),
}

/// What the file kinds keep from before any task exists until every task has its files.
#[derive(Debug)]
pub struct Prepared {
    shell_job: Option<ShellJob>,
    /// Names made for remapped files; removed when this is dropped, also on failure.
    remaps: Remaps,
    /// POSIX message queues made in criu's namespace; removed unless [`Prepared::keep`].
    queues: crate::mqueue::restore::MadeQueues,
    /// Masters the mount tree made for pty slaves it binds (a container's /dev/console), by
    /// index: the pairs of those indexes use them.
    held_ptys: Vec<(u32, std::os::fd::OwnedFd)>,
    /// The tree's network namespaces, made before the files (see `netns`).
    netns: crate::netns::NetNamespaces,
}

/// Restore, before any task exists: the shell job's terminal (`--shell-job`), and files whose
/// names must be made again (ghost and linked remaps). `own_root`: the tree has a mount
/// namespace of its own, whose root exists only with the root task; those names are then made
/// by `open_shared`.
pub fn prepare(
    images: &mut DumpImages,
    opts: &RestoreFileOptions,
    shell_job: bool,
    own_root: bool,
) -> Result<Prepared, RestoreFilesError> {
    let orphans = opts.orphan_pts_master.is_some();
    let shell_job = crate::tty::restore::prepare(images, shell_job, orphans)?;
    let remaps = crate::ghost::restore::prepare(images, own_root)?;
    Ok(Prepared {
        shell_job,
        remaps,
        queues: Default::default(),
        held_ptys: Vec::new(),
        netns: Default::default(),
    })
}

impl Prepared {
    /// Masters of pty slaves the mount tree binds, made before the files (see `held_ptys`).
    pub fn hold_ptys(&mut self, held: Vec<(u32, std::os::fd::OwnedFd)>) {
        self.held_ptys.extend(held);
    }

    /// The tree's network namespaces, for the sockets made in them and the tasks that join
    /// them.
    pub fn hold_netns(&mut self, netns: crate::netns::NetNamespaces) {
        self.netns = netns;
    }

    /// Opens every object the tasks' fds name, once, in criu (the description registry),
    /// after making the remapped names left for the tree's own root (`opts.root`).
    pub fn open_shared(
        &mut self,
        images: &DumpImages,
        opts: &RestoreFileOptions,
    ) -> Result<SharedFiles, RestoreFilesError> {
        let root = crate::root::FsRoot::new(opts.root.clone());
        self.remaps
            .make_pending(&images.dir, &root, images.root().host_pid())?;
        let netns = std::mem::take(&mut self.netns);
        let mut shared = SharedFiles::create(images, opts, netns)?;
        self.queues = std::mem::take(&mut shared.mq_made);
        shared.held_ptys.extend(std::mem::take(&mut self.held_ptys));
        if let Some(job) = &self.shell_job {
            job.hand_out(&mut shared)?;
        }
        for master in std::mem::take(&mut shared.ctty.orphan_masters) {
            let give = opts
                .orphan_pts_master
                .as_ref()
                .ok_or_else(|| TtyError::Session("a pty master was made for no one".into()))?;
            (give.0)(master).map_err(|e| TtyError::Session(format!("orphan-pts-master: {e}")))?;
        }
        crate::fown::restore::restore_tty_owners(images, &mut shared)?;
        Ok(shared)
    }

    /// The restore succeeded: what it made that outlives it (POSIX message queues) stays.
    pub fn keep(&mut self) {
        self.queues.keep();
    }

    /// Once every task has its files: remapped names go, the shell job's terminal settles.
    pub fn finish(&mut self, root: i32) -> Result<(), RestoreFilesError> {
        self.remaps.clean();
        if let Some(job) = &self.shell_job {
            job.settle_terminal(root)?;
        }
        Ok(())
    }
}

/// Restore, once every task exists: what names tasks (file owners, pidfds of tasks) or must
/// wait for the mappings (memfd seals that forbid them).
pub fn after_tasks_exist(images: &DumpImages, shared: &SharedFiles) -> Result<(), SharedError> {
    shared.set_owners(images)?;
    crate::pidfd::restore::open_live(images, shared)?;
    crate::memfd::restore::add_late_seals(images, shared)
}
