//! The cgroup freezer, v1 (`freezer.state`) and v2 (`cgroup.freeze`): the other way to stop a
//! whole tree before seizing it (`--freeze-cgroup`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    #[error("{path}: not a freezer cgroup (no freezer.state or cgroup.freeze)")]
    NotAFreezer { path: PathBuf },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: not frozen after {secs:.1}s (state {state:?})")]
    Timeout {
        path: PathBuf,
        secs: f64,
        state: String,
    },
}

pub type Result<T> = std::result::Result<T, FreezerError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerVersion {
    /// cgroup v1 freezer controller: write FROZEN/THAWED to `freezer.state`.
    V1,
    /// cgroup v2: write 1/0 to `cgroup.freeze`, watch `frozen` in `cgroup.events`.
    V2,
}

#[derive(Debug, Clone)]
pub struct Freezer {
    dir: PathBuf,
    version: FreezerVersion,
}

impl Freezer {
    /// The freezer of the cgroup directory `dir`, whichever version it is.
    pub fn open(dir: &Path) -> Result<Freezer> {
        let version = if dir.join("cgroup.freeze").exists() {
            FreezerVersion::V2
        } else if dir.join("freezer.state").exists() {
            FreezerVersion::V1
        } else {
            return Err(FreezerError::NotAFreezer {
                path: dir.to_path_buf(),
            });
        };
        Ok(Freezer {
            dir: dir.to_path_buf(),
            version,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn version(&self) -> FreezerVersion {
        self.version
    }

    /// The file whose writes freeze and thaw.
    pub fn control_file(&self) -> PathBuf {
        match self.version {
            FreezerVersion::V1 => self.dir.join("freezer.state"),
            FreezerVersion::V2 => self.dir.join("cgroup.freeze"),
        }
    }

    /// What to write to `control_file()` to thaw (kept so a signal handler can do it with a
    /// plain write to an already open fd).
    pub fn thaw_value(&self) -> &'static [u8] {
        match self.version {
            FreezerVersion::V1 => b"THAWED",
            FreezerVersion::V2 => b"0",
        }
    }

    fn freeze_value(&self) -> &'static [u8] {
        match self.version {
            FreezerVersion::V1 => b"FROZEN",
            FreezerVersion::V2 => b"1",
        }
    }

    fn write_control(&self, value: &[u8], what: &'static str) -> Result<()> {
        let path = self.control_file();
        std::fs::write(&path, value).map_err(|source| FreezerError::Io { path, what, source })
    }

    /// The current state in words: v1 `THAWED`/`FREEZING`/`FROZEN`, v2 `frozen 0`/`frozen 1`.
    pub fn state(&self) -> Result<String> {
        let (path, what) = match self.version {
            FreezerVersion::V1 => (self.dir.join("freezer.state"), "cannot read freezer.state"),
            FreezerVersion::V2 => (self.dir.join("cgroup.events"), "cannot read cgroup.events"),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| FreezerError::Io {
            path,
            what,
            source,
        })?;
        Ok(match self.version {
            FreezerVersion::V1 => text.trim().to_string(),
            FreezerVersion::V2 => text
                .lines()
                .find(|l| l.starts_with("frozen "))
                .unwrap_or("frozen ?")
                .to_string(),
        })
    }

    pub fn is_frozen(&self) -> Result<bool> {
        let state = self.state()?;
        Ok(match self.version {
            FreezerVersion::V1 => state == "FROZEN",
            FreezerVersion::V2 => state == "frozen 1",
        })
    }

    /// Freezes the cgroup and waits until every task in it is frozen; on timeout it thaws again
    /// and fails, so a failed freeze leaves the tree running.
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        self.write_control(self.freeze_value(), "cannot freeze")?;
        let mut pause = Duration::from_micros(100);
        loop {
            if self.is_frozen()? {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let state = self.state().unwrap_or_default();
                let _ = self.thaw();
                return Err(FreezerError::Timeout {
                    path: self.dir.clone(),
                    secs: timeout.as_secs_f64(),
                    state,
                });
            }
            // v1 can stay FREEZING while a task forks; asking again moves it on.
            if self.version == FreezerVersion::V1 {
                self.write_control(self.freeze_value(), "cannot freeze")?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    pub fn thaw(&self) -> Result<()> {
        self.write_control(self.thaw_value(), "cannot thaw")
    }

    /// Thread ids in the cgroup (v1 `tasks`, v2 `cgroup.threads`).
    pub fn tasks(&self) -> Result<Vec<i32>> {
        let path = match self.version {
            FreezerVersion::V1 => self.dir.join("tasks"),
            FreezerVersion::V2 => self.dir.join("cgroup.threads"),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| FreezerError::Io {
            path: path.clone(),
            what: "cannot read task list",
            source,
        })?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

/// Whether task `pid` is in a job-control stop (SIGSTOP and friends). A frozen task shows
/// state `D` in /proc, but one that was stopped still waits in `do_signal_stop`. Such a task
/// must not be seized while frozen: the seize makes it trap, which it cannot do frozen, and
/// the kernel's `ptrace_attach` waits for that trap until criu is killed (upstream CRIU hangs
/// there). It cannot run while stopped, so it is seized once the cgroup is thawed.
pub fn is_stopped(pid: i32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .and_then(|rest| rest.chars().next());
    match state {
        Some('T') => return true,
        // v1 frozen; a v2 frozen task sleeps in its freezer trap ('S').
        Some('D') => {}
        _ => return false,
    }
    std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .is_ok_and(|w| w.trim() == "do_signal_stop")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory standing in for a cgroup (plain files behave like the control files).
    fn fake_cgroup(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("criu-freezer-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    #[test]
    fn detects_version_from_files() {
        let v1 = fake_cgroup("v1", &[("freezer.state", "THAWED\n")]);
        let f = Freezer::open(&v1).unwrap();
        assert_eq!(f.version(), FreezerVersion::V1);
        assert_eq!(f.control_file(), v1.join("freezer.state"));
        assert!(!f.is_frozen().unwrap());

        let v2 = fake_cgroup(
            "v2",
            &[
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        let f = Freezer::open(&v2).unwrap();
        assert_eq!(f.version(), FreezerVersion::V2);
        assert!(f.is_frozen().unwrap());
        assert_eq!(f.thaw_value(), b"0");

        let none = fake_cgroup("none", &[]);
        assert!(matches!(
            Freezer::open(&none),
            Err(FreezerError::NotAFreezer { .. })
        ));
        for d in [v1, v2, none] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn a_stopped_task_is_seen_stopped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!is_stopped(pid));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_stopped(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = is_stopped(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(stopped, "pid {pid} never seen stopped");
    }

    #[test]
    fn freeze_times_out_and_thaws_when_never_frozen() {
        // cgroup.events never says "frozen 1", like a cgroup whose tasks cannot freeze.
        let v2 = fake_cgroup(
            "stuck",
            &[("cgroup.freeze", "0\n"), ("cgroup.events", "frozen 0\n")],
        );
        let f = Freezer::open(&v2).unwrap();
        let err = f.freeze(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, FreezerError::Timeout { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(v2.join("cgroup.freeze")).unwrap(),
            "0"
        );
        std::fs::remove_dir_all(v2).unwrap();
    }
}
