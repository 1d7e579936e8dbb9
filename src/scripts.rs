//! `--action-script`: external programs run at fixed points of dump and restore, with the
//! environment CRIU gives them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// The actions a script is told about, by CRIU's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PreDump,
    PostDump,
    PreRestore,
    PostRestore,
    NetworkLock,
    NetworkUnlock,
    SetupNamespaces,
    PostSetupNamespaces,
    PreResume,
    PostResume,
    OrphanPtsMaster,
    StatusReady,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::PreDump => "pre-dump",
            Action::PostDump => "post-dump",
            Action::PreRestore => "pre-restore",
            Action::PostRestore => "post-restore",
            Action::NetworkLock => "network-lock",
            Action::NetworkUnlock => "network-unlock",
            Action::SetupNamespaces => "setup-namespaces",
            Action::PostSetupNamespaces => "post-setup-namespaces",
            Action::PreResume => "pre-resume",
            Action::PostResume => "post-resume",
            Action::OrphanPtsMaster => "orphan-pts-master",
            Action::StatusReady => "status-ready",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("action script {path} ({action}): cannot run: {reason}")]
    Spawn {
        path: String,
        action: &'static str,
        reason: std::io::Error,
    },
    #[error("action script {path} ({action}) exited with {status}")]
    Failed {
        path: String,
        action: &'static str,
        status: std::process::ExitStatus,
    },
    #[error("notify {action}: {reason}")]
    Notify {
        action: &'static str,
        reason: String,
    },
    #[error("cannot open images dir {path} for action scripts: {reason}")]
    ImagesDir {
        path: String,
        reason: std::io::Error,
    },
}

/// Tells the RPC client about an action instead of running scripts (a request with
/// `notify_scripts`); its error is the client's refusal.
pub type Notifier = Box<dyn Fn(Action, Option<i32>) -> Result<(), String> + Send + Sync>;

static NOTIFIER: std::sync::Mutex<Option<Notifier>> = std::sync::Mutex::new(None);

/// Sets (or, with None, clears) the RPC notifier of this process.
pub fn set_notifier(n: Option<Notifier>) {
    *NOTIFIER.lock().unwrap_or_else(|e| e.into_inner()) = n;
}

/// The configured scripts and the images dir they see as `/proc/CRIU/fd/N`.
pub struct ActionScripts {
    paths: Vec<String>,
    images_dir: Option<OwnedFd>,
}

impl ActionScripts {
    /// `paths` in command-line order. Opens the images dir only if there are scripts.
    pub fn new(paths: &[String], images_dir: &Path) -> Result<Self, ScriptError> {
        let images_dir = if paths.is_empty() {
            None
        } else {
            let dir = std::fs::File::open(images_dir).map_err(|reason| ScriptError::ImagesDir {
                path: images_dir.display().to_string(),
                reason,
            })?;
            Some(OwnedFd::from(dir))
        };
        Ok(ActionScripts {
            paths: paths.to_vec(),
            images_dir,
        })
    }

    /// Runs every script for `action`. CRIU keeps scripts in a list it pushes to the front
    /// of, so the last one given runs first; all run even if one fails.
    pub fn run(&self, action: Action, root_pid: Option<i32>) -> Result<(), ScriptError> {
        if let Some(notify) = NOTIFIER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return notify(action, root_pid).map_err(|reason| ScriptError::Notify {
                action: action.name(),
                reason,
            });
        }
        let Some(dir) = &self.images_dir else {
            return Ok(());
        };
        tracing::debug!("Running {} scripts", action.name());
        let image_dir = format!("/proc/{}/fd/{}", std::process::id(), dir.as_raw_fd());
        let mut first_error = None;
        for path in self.paths.iter().rev() {
            let mut cmd = Command::new(path);
            cmd.env("CRTOOLS_SCRIPT_ACTION", action.name())
                .env("CRTOOLS_IMAGE_DIR", &image_dir)
                .stdin(Stdio::null());
            if let Some(pid) = root_pid {
                cmd.env("CRTOOLS_INIT_PID", pid.to_string());
            }
            let result = match cmd.status() {
                Err(reason) => Err(ScriptError::Spawn {
                    path: path.clone(),
                    action: action.name(),
                    reason,
                }),
                Ok(status) if !status.success() => Err(ScriptError::Failed {
                    path: path.clone(),
                    action: action.name(),
                    status,
                }),
                Ok(_) => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!("{e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    #[test]
    fn scripts_get_criu_environment_in_criu_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = out.display();
        let a = script(dir.path(), "a", &format!("echo \"a $CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID\" >> {o}; ls $CRTOOLS_IMAGE_DIR/ >> {o}"));
        let b = script(
            dir.path(),
            "b",
            &format!("echo \"b $CRTOOLS_SCRIPT_ACTION\" >> {o}"),
        );
        std::fs::write(dir.path().join("marker.img"), "").unwrap();
        let scripts = ActionScripts::new(&[a, b], dir.path()).unwrap();
        scripts.run(Action::PostRestore, Some(4242)).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "b post-restore");
        assert_eq!(lines[1], "a post-restore 4242");
        assert!(
            lines.contains(&"marker.img"),
            "images dir not visible: {text}"
        );
    }

    #[test]
    fn a_failing_script_fails_the_action_but_others_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ran");
        let ok = script(dir.path(), "ok", &format!("touch {}", out.display()));
        let bad = script(dir.path(), "bad", "exit 3");
        let scripts = ActionScripts::new(&[ok, bad], dir.path()).unwrap();
        let err = scripts.run(Action::PreDump, None).unwrap_err();
        assert!(matches!(err, ScriptError::Failed { .. }), "{err}");
        assert!(out.exists());
    }

    #[test]
    fn no_scripts_is_a_no_op_and_missing_script_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        ActionScripts::new(&[], Path::new("/nonexistent"))
            .unwrap()
            .run(Action::PreDump, None)
            .unwrap();
        let s = ActionScripts::new(&["/nonexistent/script".into()], dir.path()).unwrap();
        assert!(matches!(
            s.run(Action::PreDump, None),
            Err(ScriptError::Spawn { .. })
        ));
    }
}
