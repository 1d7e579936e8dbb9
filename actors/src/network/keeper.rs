//! The undo of a dump's network changes when criu dies (SIGKILL, OOM, a crash) before it lets
//! the tree go: without it the tree runs on with its connections in repair mode and their
//! traffic dropped by the lock's rules. A process of its own (criu's binary run as
//! `__network-keeper`, in a process group of its own) is told before each change what undoes
//! it: each connection about to be locked, each namespace about to be locked (an fd of it), each
//! socket about to enter repair mode (a copy of it). Dismissed, it exits; at end of input
//! without a word (criu is gone) it takes every socket out of repair mode and removes the
//! rules. Told of a change that never happened, it undoes nothing that matters: a socket not in
//! repair is left as it is, a rule that is not there cannot be removed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use criu_netdev::lock::{self, Conn, Method};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// The hidden command word of the keeper.
pub const NAME: &str = "__network-keeper";

/// One message to the keeper (one datagram; `Netns` and `Repair` carry an fd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// A connection of the host's namespace is about to be locked.
    Conn {
        method: Method,
        run_id: String,
        conn: Conn,
    },
    /// The namespace of the fd is about to be locked as a whole.
    Netns { method: Method, run_id: String },
    /// The socket of the fd is about to enter repair mode; its SO_REUSEADDR.
    Repair { reuseaddr: bool },
    /// The dump stands or criu undid it itself: nothing to do.
    Done,
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Iptables => "iptables",
        Method::Nftables => "nftables",
        Method::Skip => "skip",
    }
}

fn method_named(s: &str) -> Option<Method> {
    Some(match s {
        "iptables" => Method::Iptables,
        "nftables" => Method::Nftables,
        "skip" => Method::Skip,
        _ => return None,
    })
}

impl Word {
    pub fn encode(&self) -> String {
        match self {
            Word::Conn {
                method,
                run_id,
                conn,
            } => format!(
                "conn {} {run_id} {} {}",
                method_name(*method),
                conn.local,
                conn.remote
            ),
            Word::Netns { method, run_id } => format!("netns {} {run_id}", method_name(*method)),
            Word::Repair { reuseaddr } => format!("repair {}", u8::from(*reuseaddr)),
            Word::Done => "done".into(),
        }
    }

    pub fn parse(text: &str) -> Option<Word> {
        let mut w = text.split(' ');
        let word = match w.next()? {
            "conn" => Word::Conn {
                method: method_named(w.next()?)?,
                run_id: w.next()?.to_string(),
                conn: Conn {
                    local: w.next()?.parse().ok()?,
                    remote: w.next()?.parse().ok()?,
                },
            },
            "netns" => Word::Netns {
                method: method_named(w.next()?)?,
                run_id: w.next()?.to_string(),
            },
            "repair" => Word::Repair {
                reuseaddr: w.next()? == "1",
            },
            "done" => Word::Done,
            _ => return None,
        };
        w.next().is_none().then_some(word)
    }
}

/// criu's half: the running keeper.
pub struct Keeper {
    child: Child,
    sock: OwnedFd,
}

impl Keeper {
    /// Starts the keeper program `exe`. Called from a thread in criu's own network namespace.
    pub fn start(exe: &Path) -> Result<Keeper, String> {
        let (mine, its) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::SeqPacket,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("network keeper: socketpair: {e}"))?;
        let child = Command::new(exe)
            .arg(NAME)
            .stdin(Stdio::from(its))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the network keeper {}: {e}", exe.display()))?;
        Ok(Keeper { child, sock: mine })
    }

    /// Tells the keeper `word`, with `fd` when it needs one.
    pub fn tell(&self, word: &Word, fd: Option<BorrowedFd<'_>>) -> Result<(), String> {
        let text = word.encode();
        let iov = [std::io::IoSlice::new(text.as_bytes())];
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsg: Vec<ControlMessage> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
        socket::sendmsg::<()>(
            self.sock.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|e| format!("network keeper: cannot tell it {text:?}: {e}"))
    }

    /// The dump stands, or criu undid its changes itself: the keeper exits doing nothing.
    pub fn dismiss(mut self) {
        if let Err(e) = self.tell(&Word::Done, None) {
            tracing::warn!("{e}");
        }
        drop(self.sock);
        let _ = self.child.wait();
    }
}

/// A keeper started at the first change it must know of, by one thread or another of a dump.
pub struct KeeperSlot {
    /// The keeper program (criu's own binary); None: no keeper (criu as a library, in tests).
    exe: Option<PathBuf>,
    keeper: Mutex<Option<Keeper>>,
}

impl KeeperSlot {
    pub fn new(exe: Option<PathBuf>) -> Self {
        KeeperSlot {
            exe,
            keeper: Mutex::new(None),
        }
    }

    /// Tells the keeper, started now if it is not yet.
    pub fn tell(&self, word: &Word, fd: Option<BorrowedFd<'_>>) -> Result<(), String> {
        let Some(exe) = &self.exe else {
            return Ok(());
        };
        let mut slot = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Keeper::start(exe)?);
        }
        slot.as_ref().map_or(Ok(()), |k| k.tell(word, fd))
    }

    pub fn dismiss(&self) {
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(k) = keeper {
            k.dismiss();
        }
    }
}

/// The keeper's half: what it was told, undone if criu goes away without dismissing it.
#[derive(Default)]
struct Undo {
    conns: Vec<(Method, String, Conn)>,
    netns: Vec<(Method, String, OwnedFd)>,
    repaired: Vec<(OwnedFd, bool)>,
}

/// Serves criu on `input` (the keeper's stdin); returns the exit code.
pub fn serve(input: OwnedFd) -> i32 {
    let mut undo = Undo::default();
    let mut buf = [0u8; 512];
    loop {
        let (n, fd) = match receive(&input, &mut buf) {
            Ok(got) => got,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        match (Word::parse(&text), fd) {
            (Some(Word::Done), _) => return 0,
            (
                Some(Word::Conn {
                    method,
                    run_id,
                    conn,
                }),
                _,
            ) => undo.conns.push((method, run_id, conn)),
            (Some(Word::Netns { method, run_id }), Some(fd)) => {
                undo.netns.push((method, run_id, fd))
            }
            (Some(Word::Repair { reuseaddr }), Some(fd)) => undo.repaired.push((fd, reuseaddr)),
            _ => eprintln!("criu network keeper: unexpected message {text:?}"),
        }
    }
    undo.apply();
    0
}

/// One datagram and the fd it carries, if any.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>), nix::errno::Errno> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for r in raw {
                // Ours alone: the kernel just installed it in this process.
                let owned = criu_sys::fd::own_inherited(r)?;
                fd.get_or_insert(owned);
            }
        }
    }
    Ok((msg.bytes, fd))
}

impl Undo {
    /// criu is gone: connections leave repair mode (and talk again), then the rules go.
    fn apply(self) {
        for (sock, reuseaddr) in &self.repaired {
            let sock = sock.as_fd();
            if criu_files::inet::repair::is_on(sock).unwrap_or(false) {
                if let Err(e) = criu_files::inet::repair::leave(sock, *reuseaddr) {
                    eprintln!("criu network keeper: {e}");
                }
            }
        }
        let mut batches: Vec<(Method, String, Vec<Conn>)> = Vec::new();
        for (method, run_id, conn) in self.conns {
            match batches
                .iter_mut()
                .find(|(m, r, _)| *m == method && *r == run_id)
            {
                Some(b) => b.2.push(conn),
                None => batches.push((method, run_id, vec![conn])),
            }
        }
        for (method, run_id, conns) in batches {
            // A connection told but not locked yet has no rule: that one failure is expected.
            let _ = lock::unlock_connections(method, &run_id, &conns);
        }
        // Last, as joining a namespace leaves the host's for good (this process ends here).
        for (method, run_id, ns) in self.netns {
            let joined = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
            match joined.map(|()| lock::unlock_netns(method, &run_id)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("criu network keeper: {e}"),
                Err(e) => eprintln!("criu network keeper: cannot join a locked namespace: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_written() {
        let words = [
            Word::Conn {
                method: Method::Iptables,
                run_id: "4f0c-11".into(),
                conn: Conn {
                    local: "127.0.0.1:80".parse().unwrap(),
                    remote: "[::1]:41000".parse().unwrap(),
                },
            },
            Word::Netns {
                method: Method::Nftables,
                run_id: "r".into(),
            },
            Word::Repair { reuseaddr: true },
            Word::Repair { reuseaddr: false },
            Word::Done,
        ];
        for w in words {
            assert_eq!(Word::parse(&w.encode()), Some(w.clone()), "{}", w.encode());
        }
    }

    #[test]
    fn a_garbled_word_is_refused() {
        for bad in [
            "",
            "conn iptables r 127.0.0.1:80",
            "conn pf r 127.0.0.1:80 127.0.0.1:81",
            "netns nftables",
            "done now",
            "repair",
        ] {
            assert_eq!(Word::parse(bad), None, "{bad:?}");
        }
    }
}
