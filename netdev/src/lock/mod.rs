//! The network lock: netfilter rules that keep the tree's TCP traffic from moving while it is
//! dumped and restored, so that neither end sees a reset or loses data. The kernel keeps
//! unacknowledged data queued and retransmits it once the rules are gone.
//!
//! Two shapes, as criu has them: a tree in the host's network namespace gets one pair of rules
//! per connection ([`lock_connections`]); a tree with a namespace of its own gets everything
//! in it dropped ([`lock_netns`], run by a thread that joined that namespace). Either way the
//! packets of sockets in TCP repair carry [`SOCCR_MARK`] and pass.
//!
//! Each backend drives its command-line tool ([`iptables`], [`nftables`]); a lock that fails
//! half way takes back what it added.

pub mod iptables;
mod nft_handles;
pub mod nftables;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitStatus, Stdio};

/// The mark criu gives the sockets it repairs (soccr's): packets that carry it pass the lock.
pub const SOCCR_MARK: u32 = 0xC114;

/// How the network is locked (`--network-lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Iptables,
    Nftables,
    /// The caller (a container runtime, a script) takes care of it.
    Skip,
}

/// One TCP connection as the dumped socket sees it (local = the tree's end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("network lock: cannot run {cmd}: {source}{}", missing_hint(source))]
    Spawn { cmd: String, source: std::io::Error },
    #[error(
        "network lock: {cmd}{}: {status}{}",
        input_note(input),
        stderr_note(stderr)
    )]
    Failed {
        cmd: String,
        input: Option<String>,
        status: String,
        stderr: String,
    },
    #[error(
        "network lock: run id {0:?} cannot name a table (only letters, digits, '-', '_', '.')"
    )]
    RunId(String),
    #[error("network lock: connection {local} - {remote} has one IPv4 and one IPv6 end")]
    MixedFamilies {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// The namespace lock's table is there already: locked earlier (at dump, for a restore).
    #[error("network lock: table {0} exists already (the network is locked)")]
    Locked(String),
    #[error("{error}; taking back what was added failed too: {rollback}")]
    Rollback {
        error: Box<LockError>,
        rollback: Box<LockError>,
    },
}

fn missing_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        " (is it installed?)"
    } else {
        ""
    }
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The first lines of a script fed on stdin: enough to recognise it in a log.
fn input_note(input: &Option<String>) -> String {
    const SHOWN: usize = 8;
    let Some(text) = input else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut note = lines[..lines.len().min(SHOWN)].join("; ");
    if lines.len() > SHOWN {
        note.push_str(&format!("; ... ({} lines)", lines.len()));
    }
    format!(" (input: {note})")
}

/// Locks each connection (a tree in the host's network namespace). With nftables the table
/// `inet CRIU-<run_id>` is made on the first call and later calls add to it.
pub fn lock_connections(method: Method, run_id: &str, conns: &[Conn]) -> Result<(), LockError> {
    match method {
        Method::Iptables => iptables::lock_connections(&ends_of(conns)?),
        Method::Nftables => nftables::lock_connections(run_id, &ends_of(conns)?),
        Method::Skip => Ok(()),
    }
}

/// Unlocks each connection; with nftables, the whole table goes (`conns` is not needed). Goes
/// on past a failure and reports the first.
pub fn unlock_connections(method: Method, run_id: &str, conns: &[Conn]) -> Result<(), LockError> {
    match method {
        Method::Iptables => iptables::unlock_connections(&ends_of(conns)?),
        Method::Nftables => nftables::unlock(run_id),
        Method::Skip => Ok(()),
    }
}

/// Locks the caller's current network namespace: everything is dropped but packets marked
/// [`SOCCR_MARK`]. With nftables a namespace locked already gives [`LockError::Locked`].
pub fn lock_netns(method: Method, run_id: &str) -> Result<(), LockError> {
    match method {
        Method::Iptables => iptables::lock_netns(),
        Method::Nftables => nftables::lock_netns(run_id),
        Method::Skip => Ok(()),
    }
}

/// Unlocks the caller's current network namespace.
pub fn unlock_netns(method: Method, run_id: &str) -> Result<(), LockError> {
    match method {
        Method::Iptables => iptables::unlock_netns(),
        Method::Nftables => nftables::unlock_netns(run_id),
        Method::Skip => Ok(()),
    }
}

/// A connection as a rule names it: both ends in one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ends {
    pub v6: bool,
    pub local: IpAddr,
    pub lport: u16,
    pub remote: IpAddr,
    pub rport: u16,
}

impl Ends {
    /// An IPv6 socket talking to an IPv4 peer shows both ends as `::ffff:a.b.c.d`, but its
    /// packets are IPv4 ones: iptables and `ip` rules match them.
    pub fn of(conn: &Conn) -> Result<Self, LockError> {
        let plain = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        let (local, remote) = (plain(conn.local.ip()), plain(conn.remote.ip()));
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(LockError::MixedFamilies {
                local: conn.local,
                remote: conn.remote,
            });
        }
        Ok(Ends {
            v6: local.is_ipv6(),
            local,
            lport: conn.local.port(),
            remote,
            rport: conn.remote.port(),
        })
    }
}

/// Every connection checked before any rule is added.
fn ends_of(conns: &[Conn]) -> Result<Vec<Ends>, LockError> {
    conns.iter().map(Ends::of).collect()
}

/// One run of a tool, without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: &'static str,
    pub args: Vec<String>,
    /// Fed on stdin (a script); stdin is /dev/null without it.
    pub input: Option<String>,
}

impl Cmd {
    pub fn new<I, S>(program: &'static str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            program,
            args: args.into_iter().map(Into::into).collect(),
            input: None,
        }
    }

    pub fn with_input(mut self, input: String) -> Self {
        self.input = Some(input);
        self
    }

    /// The command line as a log shows it.
    pub fn line(&self) -> String {
        std::iter::once(self.program)
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs it in the calling thread's namespaces; its stdout when it exits with 0.
    pub(crate) fn run(&self) -> Result<String, LockError> {
        let (status, stdout, stderr) = self.output()?;
        if status.success() {
            Ok(stdout)
        } else {
            Err(LockError::Failed {
                cmd: self.line(),
                input: self.input.clone(),
                status: describe(status),
                stderr: stderr.trim_end().to_string(),
            })
        }
    }

    fn output(&self) -> Result<(ExitStatus, String, String), LockError> {
        let spawn_err = |source| LockError::Spawn {
            cmd: self.line(),
            source,
        };
        let mut child = Command::new(self.program)
            .args(&self.args)
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        // Written from a second thread: a tool that answers before it read everything must
        // not leave both sides blocked on full pipes.
        let stdin = child.stdin.take();
        let out = std::thread::scope(|s| {
            if let (Some(mut pipe), Some(input)) = (stdin, self.input.as_deref()) {
                // A write error means the tool exited early; its status and stderr say why.
                s.spawn(move || pipe.write_all(input.as_bytes()));
            }
            child.wait_with_output()
        })
        .map_err(spawn_err)?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The original error, and the rollback's if that failed too.
fn with_rollback(error: LockError, rollback: Result<(), LockError>) -> LockError {
    match rollback {
        Ok(()) => error,
        Err(rollback) => LockError::Rollback {
            error: Box::new(error),
            rollback: Box::new(rollback),
        },
    }
}

/// Runs every step even after a failure; the first failure.
fn all<T>(
    items: impl IntoIterator<Item = T>,
    mut step: impl FnMut(T) -> Result<(), LockError>,
) -> Result<(), LockError> {
    let mut first = Ok(());
    for item in items {
        if let Err(e) = step(item) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(local: &str, remote: &str) -> Conn {
        Conn {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn mapped_ipv6_addresses_are_ipv4() {
        let ends = Ends::of(&conn("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.2]:4000")).unwrap();
        assert_eq!(
            ends,
            Ends {
                v6: false,
                local: "10.0.0.1".parse().unwrap(),
                lport: 80,
                remote: "10.0.0.2".parse().unwrap(),
                rport: 4000,
            }
        );
        let plain = Ends::of(&conn("[2001:db8::1]:80", "[::1]:4000")).unwrap();
        assert!(plain.v6);
        assert_eq!(plain.remote, "::1".parse::<IpAddr>().unwrap());
        // ::a.b.c.d (IPv4-compatible, deprecated) is a real IPv6 address.
        assert!(
            Ends::of(&conn("[::10.0.0.1]:1", "[::10.0.0.2]:2"))
                .unwrap()
                .v6
        );
        assert!(!Ends::of(&conn("127.0.0.1:1", "10.0.0.2:2")).unwrap().v6);
    }

    #[test]
    fn one_end_of_each_family_is_refused() {
        let err = Ends::of(&conn("[::ffff:10.0.0.1]:80", "[2001:db8::2]:4000")).unwrap_err();
        assert!(matches!(err, LockError::MixedFamilies { .. }), "{err}");
        assert!(err.to_string().contains("[2001:db8::2]:4000"), "{err}");
    }

    #[test]
    fn skip_does_nothing() {
        // Not even the checks: nothing runs, whatever the arguments.
        let bad = [conn("[::ffff:10.0.0.1]:80", "[::1]:1")];
        lock_connections(Method::Skip, "bad id!", &bad).unwrap();
        unlock_connections(Method::Skip, "bad id!", &bad).unwrap();
        lock_netns(Method::Skip, "bad id!").unwrap();
        unlock_netns(Method::Skip, "bad id!").unwrap();
    }

    #[test]
    fn errors_name_the_command_its_status_and_stderr() {
        let err = Cmd::new("sh", ["-c", "echo oops >&2; exit 3"])
            .run()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network lock: sh -c echo oops >&2; exit 3: exited with 3: oops"
        );
        let err = Cmd::new("criu-no-such-tool", ["-w"]).run().unwrap_err();
        assert_eq!(
            err.to_string(),
            "network lock: cannot run criu-no-such-tool -w: No such file or directory \
             (os error 2) (is it installed?)"
        );
        let script: String = (0..10).map(|i| format!("line {i}\n")).collect();
        let err = Cmd::new("sh", ["-c", "cat >/dev/null; exit 1"])
            .with_input(script)
            .run()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network lock: sh -c cat >/dev/null; exit 1 (input: line 0; line 1; line 2; \
             line 3; line 4; line 5; line 6; line 7; ... (10 lines)): exited with 1"
        );
    }

    #[test]
    fn input_goes_to_stdin_and_stdout_comes_back() {
        let big = "x".repeat(1 << 20);
        let out = Cmd::new("wc", ["-c"]).with_input(big).run().unwrap();
        assert_eq!(out.trim(), (1 << 20).to_string());
        // Without input stdin is /dev/null, not the test's.
        assert_eq!(Cmd::new("wc", ["-c"]).run().unwrap().trim(), "0");
    }
}
