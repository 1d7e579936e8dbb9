//! The root the dumped paths are seen from. Paths in the images are the task's own: from its
//! root, in its mount namespace. When the tree has a mount namespace of its own, criu reaches
//! them through `/proc/PID/root` of a task of the tree (the magic link enters the task's root
//! and mount namespace); otherwise they are criu's own paths. criu's own paths (`/proc/self`,
//! `/proc/HOSTPID`, the images directory) never go through it.

use std::path::{Path, PathBuf};

/// `None`: the tree shares criu's root; `Some(p)`: its root, e.g. `/proc/PID/root`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsRoot(Option<PathBuf>);

impl FsRoot {
    pub fn new(root: Option<PathBuf>) -> FsRoot {
        FsRoot(root)
    }

    /// The root of task `pid`'s tree, as criu reaches it.
    pub fn of_task(pid: i32) -> FsRoot {
        FsRoot(Some(PathBuf::from(format!("/proc/{pid}/root"))))
    }

    /// Whether the tree has a root of its own.
    pub fn is_own(&self) -> bool {
        self.0.is_some()
    }

    /// Where criu finds the task's `path`.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        match &self.0 {
            None => path.to_path_buf(),
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        }
    }

    /// The task's path of `resolved`, a path `resolve` gave (or one found below it).
    pub fn unresolve(&self, resolved: &Path) -> PathBuf {
        match &self.0 {
            None => resolved.to_path_buf(),
            Some(root) => match resolved.strip_prefix(root) {
                Ok(rest) => Path::new("/").join(rest),
                Err(_) => resolved.to_path_buf(),
            },
        }
    }

    /// The mounts the task's paths cross, with their mount points as the task sees them:
    /// criu's own, or those of the task whose root this is (its `/proc/PID/mountinfo`).
    pub fn mounts(&self) -> Result<Vec<criu_procfs::MountInfo>, String> {
        let Some(root) = &self.0 else {
            return criu_procfs::read_mountinfo(std::process::id() as i32)
                .map_err(|e| format!("cannot read criu's mountinfo: {e}"));
        };
        let at = root.with_file_name("mountinfo");
        let text = std::fs::read(&at).map_err(|e| format!("cannot read {}: {e}", at.display()))?;
        criu_procfs::mountinfo::parse_mountinfo(text).map_err(|e| format!("{}: {e}", at.display()))
    }

    /// Runs `work` where absolute paths are the task's: on a thread of its own, chrooted into
    /// the tree's root. For calls that take a name the kernel keeps as given (a unix socket's
    /// bind, connect or send by name), where a `resolve`d name would be recorded instead.
    pub fn run_in<T: Send>(&self, work: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        let Some(root) = &self.0 else {
            return Ok(work());
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                // chroot changes the fs_struct every thread of criu shares, unless this
                // thread has its own.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(io("unshare(CLONE_FS) for a chroot".into()))?;
                nix::unistd::chroot(root).map_err(io(format!("chroot {}", root.display())))?;
                nix::unistd::chdir("/").map_err(io("chdir / after the chroot".into()))?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the chrooted thread panicked")))
        })
    }
}

fn io(what: String) -> impl FnOnce(nix::errno::Errno) -> std::io::Error {
    move |e| std::io::Error::new(std::io::Error::from(e).kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_root_is_left_alone() {
        let r = FsRoot::default();
        assert_eq!(r.resolve("/a/b"), PathBuf::from("/a/b"));
        assert_eq!(r.resolve("rel"), PathBuf::from("rel"));
        assert_eq!(r.unresolve(Path::new("/a/b")), PathBuf::from("/a/b"));
        assert_eq!(r.run_in(|| 7).unwrap(), 7);
    }

    #[test]
    fn paths_go_through_the_tree_root() {
        let r = FsRoot::of_task(42);
        assert_eq!(r.resolve("/a/b"), PathBuf::from("/proc/42/root/a/b"));
        assert_eq!(r.resolve("/"), PathBuf::from("/proc/42/root"));
        assert_eq!(r.resolve("rel/x"), PathBuf::from("/proc/42/root/rel/x"));
        let back = r.unresolve(&r.resolve("/a/b"));
        assert_eq!(back, PathBuf::from("/a/b"));
        assert_eq!(r.unresolve(Path::new("/proc/42/root")), PathBuf::from("/"));
    }

    #[test]
    fn a_real_root_sees_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/f"), b"x").unwrap();
        let r = FsRoot::new(Some(dir.path().to_path_buf()));
        assert!(r.resolve("/etc/f").is_file());
        let cwd = std::env::current_dir().unwrap();
        // Chrooted, "/etc/f" is the tree's; criu's own root and cwd stay as they were.
        let inside = r.run_in(|| std::fs::read("/etc/f").unwrap()).unwrap();
        assert_eq!(inside, b"x");
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(Path::new("/proc/self/exe").exists());
    }
}
