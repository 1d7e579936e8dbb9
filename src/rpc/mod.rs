//! CRIU's RPC, as container runtimes use it: `criu swrk FD` serves the requests that come over
//! the socket FD it was given (runc, crun's libcriu, go-criu and pycriu start it so), and
//! `criu service` listens on a unix socket and starts one `criu swrk` per client connection.
//! Requests are `rpc.proto`'s `criu_req`, answers `criu_resp`; action scripts become NOTIFY
//! messages the client answers, when the request asks for it.

mod handle;
pub mod opts;
mod service;
mod session;

use std::sync::Arc;

use criu_proto::rpc::{CriuReqType, CriuResp};

pub use service::serve;
use session::Session;

/// `criu swrk FD`: serves the requests on FD until the client closes it or a request does not
/// ask to keep the connection open (a PRE_DUMP does, as CRIU's).
pub fn swrk(fd: i32) -> i32 {
    let sock = match criu_sys::fd::own_inherited(fd) {
        Ok(sock) => sock,
        Err(e) => {
            tracing::error!("swrk: fd {fd}: {e}");
            return 1;
        }
    };
    let session = match Session::new(sock) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!("swrk: {e}");
            return 1;
        }
    };
    loop {
        let req = match session.recv() {
            Ok(Some(req)) => req,
            Ok(None) => return 0,
            Err(e) => {
                tracing::error!("swrk: {e}");
                let resp = CriuResp {
                    r#type: CriuReqType::Empty as i32,
                    success: false,
                    cr_errmsg: Some(e),
                    ..Default::default()
                };
                let _ = session.send(&resp);
                return 1;
            }
        };
        let resp = handle::answer(&session, &req);
        if let Err(e) = session.send(&resp) {
            tracing::error!("swrk: {e}");
            return 1;
        }
        // As CRIU: a PRE_DUMP starts a series of rounds that the final DUMP ends.
        let series = req.r#type == CriuReqType::PreDump as i32 && resp.success;
        if req.keep_open != Some(true) && !series {
            return if resp.success { 0 } else { 1 };
        }
    }
}
