//! A minimal netlink client for the probes: build one request, read the replies.

use super::{check_ret, own_fd, sys, ProbeError};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

/// One received message: type and payload (after the 16-byte header).
pub(crate) struct Msg {
    pub(crate) ty: u16,
    pub(crate) payload: Vec<u8>,
}

pub(crate) struct Nl {
    fd: OwnedFd,
    seq: u32,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Nl {
    pub(crate) fn open(proto: libc::c_int) -> Result<Nl, ProbeError> {
        // SAFETY: plain socket(2) with integer arguments.
        let fd =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        let fd =
            check_ret(fd as libc::c_long).map_err(sys(format!("socket(AF_NETLINK, {proto})")))?;
        Ok(Nl {
            fd: own_fd(fd),
            seq: 1,
        })
    }

    /// Appends one message (header + payload) to `buf`; returns its sequence number.
    pub(crate) fn push(&mut self, buf: &mut Vec<u8>, ty: u16, flags: u16, payload: &[u8]) -> u32 {
        self.seq += 1;
        let len = 16 + payload.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&self.seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(payload);
        buf.resize(align4(buf.len()), 0);
        self.seq
    }

    pub(crate) fn send(&self, buf: &[u8]) -> Result<(), ProbeError> {
        // SAFETY: sends from a live buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
            )
        };
        check_ret(n as libc::c_long).map_err(sys("send a netlink request"))?;
        Ok(())
    }

    /// Reads messages until a DONE or an error/ack for `last_seq`. An error reply comes back
    /// as `Err(errno)` inside Ok.
    pub(crate) fn collect(
        &self,
        last_seq: u32,
    ) -> Result<(Vec<Msg>, Result<(), Errno>), ProbeError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receives into a live buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            let n = check_ret(n as libc::c_long).map_err(sys("receive a netlink reply"))? as usize;
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
                let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or_default());
                if len < 16 || off + len > n {
                    return Err(super::missing("malformed netlink reply"));
                }
                let payload = &buf[off + 16..off + len];
                match ty {
                    NLMSG_DONE => {
                        // A dump that failed to start reports its error in the DONE payload.
                        let err = i32::from_ne_bytes(
                            payload
                                .get(..4)
                                .and_then(|b| b.try_into().ok())
                                .unwrap_or_default(),
                        );
                        let res = if err < 0 {
                            Err(Errno::from_raw(-err))
                        } else {
                            Ok(())
                        };
                        return Ok((out, res));
                    }
                    NLMSG_ERROR => {
                        let err = i32::from_ne_bytes(
                            payload
                                .get(..4)
                                .and_then(|b| b.try_into().ok())
                                .unwrap_or_default(),
                        );
                        if err != 0 {
                            return Ok((out, Err(Errno::from_raw(-err))));
                        }
                        if seq == last_seq {
                            return Ok((out, Ok(())));
                        }
                    }
                    _ => out.push(Msg {
                        ty,
                        payload: payload.to_vec(),
                    }),
                }
                off += align4(len);
            }
        }
    }

    /// Sends one request and collects its replies.
    pub(crate) fn request(
        &mut self,
        ty: u16,
        flags: u16,
        payload: &[u8],
    ) -> Result<(Vec<Msg>, Result<(), Errno>), ProbeError> {
        let mut buf = Vec::new();
        let seq = self.push(&mut buf, ty, flags, payload);
        self.send(&buf)?;
        self.collect(seq)
    }
}

/// Appends an attribute to `buf`.
pub(crate) fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// Appends a nested attribute whose body `fill` writes.
pub(crate) fn nested(buf: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    fill(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Iterates (type, data) over the attributes in `buf`.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, data))
    })
}
