//! Feeds arbitrary bytes to the RPC request decoder and, for what decodes, turns the request's
//! options into criu's command line and parses that, as `criu swrk` does: nothing may panic.

#![no_main]

use criu::cli;
use criu::rpc::opts::{words, ClientDirs};
use criu_proto::rpc::CriuReq;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CriuReq::decode(data) else {
        return;
    };
    let opts = req.opts.unwrap_or_default();
    let dirs = ClientDirs {
        images: "/nonexistent/images".into(),
        work: None,
    };
    let Ok(rest) = words(&opts, &dirs) else {
        return;
    };
    for command in ["dump", "pre-dump", "restore", "page-server", "check"] {
        let mut line = vec!["--no-default-config".to_string(), command.to_string()];
        line.extend(rest.iter().cloned());
        let _ = cli::parse(&line);
    }
});
