//! One RPC connection: a SOCK_SEQPACKET socket carrying one protobuf message per datagram
//! (`criu_req` in, `criu_resp` out), and the client at its other end (`SO_PEERCRED`).

use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::rpc::{CriuNotify, CriuReq, CriuReqType, CriuResp};
use nix::sys::socket::{self, sockopt, MsgFlags};
use prost::Message;

/// The largest request read; a runtime's requests are a few KiB.
const MAX_REQUEST: usize = 4 << 20;

pub struct Session {
    sock: OwnedFd,
    /// The client: its pid, uid and gid as the kernel saw them when it connected.
    pub client: (i32, u32, u32),
}

impl Session {
    pub fn new(sock: OwnedFd) -> Result<Session, String> {
        let cred = socket::getsockopt(&sock, sockopt::PeerCredentials)
            .map_err(|e| format!("SO_PEERCRED: {e}"))?;
        Ok(Session {
            sock,
            client: (cred.pid(), cred.uid(), cred.gid()),
        })
    }

    /// The next request; None when the client has closed its end. A datagram that is not a
    /// request is an error the caller answers.
    pub fn recv(&self) -> Result<Option<CriuReq>, String> {
        let mut buf = vec![0u8; MAX_REQUEST];
        let n = socket::recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC)
            .map_err(|e| format!("cannot receive a request: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        if n > buf.len() {
            return Err(format!(
                "a request of {n} bytes is over the limit of {MAX_REQUEST}"
            ));
        }
        CriuReq::decode(&buf[..n])
            .map(Some)
            .map_err(|e| format!("cannot decode the request: {e}"))
    }

    pub fn send(&self, resp: &CriuResp) -> Result<(), String> {
        socket::send(
            self.sock.as_raw_fd(),
            &resp.encode_to_vec(),
            MsgFlags::MSG_NOSIGNAL,
        )
        .map(drop)
        .map_err(|e| format!("cannot send the answer: {e}"))
    }

    /// Tells the client about `script` (with the tree's root `pid`) and waits for its
    /// answer: an error when it says no or goes away.
    pub fn notify(&self, script: &str, pid: Option<i32>) -> Result<(), String> {
        self.send(&notify_of(script, pid))?;
        self.answer_to(script)
    }

    /// [`Session::notify`] with `fd` passed along (SCM_RIGHTS), as CRIU sends the master of
    /// an orphan pty: the client keeps its copy, criu closes its own.
    pub fn notify_with_fd(&self, script: &str, fd: OwnedFd) -> Result<(), String> {
        let bytes = notify_of(script, None).encode_to_vec();
        let fds = [fd.as_raw_fd()];
        socket::sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[std::io::IoSlice::new(&bytes)],
            &[socket::ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| format!("cannot send {script}: {e}"))?;
        drop(fd);
        self.answer_to(script)
    }

    /// Waits for the client's answer to the NOTIFY `script`.
    fn answer_to(&self, script: &str) -> Result<(), String> {
        match self.recv()? {
            Some(r) if r.r#type == CriuReqType::Notify as i32 && r.notify_success == Some(true) => {
                Ok(())
            }
            Some(r) if r.r#type == CriuReqType::Notify as i32 => {
                Err(format!("the client refused {script}"))
            }
            Some(r) => Err(format!(
                "the client answered {script} with a request of type {}",
                r.r#type
            )),
            None => Err(format!("the client went away during {script}")),
        }
    }
}

fn notify_of(script: &str, pid: Option<i32>) -> CriuResp {
    CriuResp {
        r#type: CriuReqType::Notify as i32,
        success: true,
        notify: Some(CriuNotify {
            script: Some(script.to_string()),
            pid,
        }),
        ..Default::default()
    }
}
