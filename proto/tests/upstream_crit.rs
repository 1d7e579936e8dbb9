//! Our crit JSON against upstream crit's, on a sample of every image kind with every field set
//! (tests/common/mod.rs). Upstream crit must be installed (Debian's `criu` package; .ci/run
//! installs it): without it this test fails rather than pass unseen.

mod common;

use std::path::PathBuf;

use common::upstream::{differences, upstream_crit, upstream_decode, UPSTREAM_CANNOT_DECODE};
use common::{framed_kinds, sample_image, sample_plain_ghost};
use criu_proto::json::{decode_image, to_python_json, DecodeOptions};

/// Our decode of `bytes`, through the JSON text as our crit prints it.
fn ours(name: &str, bytes: &[u8], pretty: bool) -> serde_json::Value {
    let json = decode_image(
        name,
        bytes,
        DecodeOptions {
            pretty,
            no_payload: false,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: our decode: {e}"));
    serde_json::from_str(&to_python_json(&json, pretty.then_some(4))).unwrap()
}

#[test]
fn every_kind_decodes_as_upstream_crit_decodes_it() {
    upstream_crit();
    let dir = tempfile::tempdir().unwrap();
    let mut images: Vec<(String, Vec<u8>)> = framed_kinds()
        .into_iter()
        .map(|k| (k.name.to_string(), sample_image(k)))
        .collect();
    images.push(("GHOST_FILE_plain".into(), sample_plain_ghost()));
    let paths: Vec<(String, PathBuf, Vec<u8>)> = images
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.path().join(format!("{name}.img"));
            std::fs::write(&path, &bytes).unwrap();
            (name, path, bytes)
        })
        .collect();
    // Upstream crit starts a Python each time: ask it from a few threads at once.
    let jobs: Vec<(&String, &PathBuf, &Vec<u8>, bool)> = paths
        .iter()
        .flat_map(|(n, p, b)| [(n, p, b, false), (n, p, b, true)])
        .collect();
    let chunk = jobs.len().div_ceil(4);
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for &(name, path, bytes, pretty) in part {
                        let mode = if pretty { " --pretty" } else { "" };
                        let cannot = UPSTREAM_CANNOT_DECODE.contains(&name.as_str());
                        match (upstream_decode(path, pretty), cannot) {
                            (Ok(up), false) => {
                                let diff = differences(&up, &ours(name, bytes, pretty));
                                if !diff.is_empty() {
                                    bad.push(format!("{name}{mode}:\n  {}", diff.join("\n  ")));
                                }
                            }
                            (Err(e), false) => bad.push(format!("{name}{mode}: upstream: {e}")),
                            (Ok(_), true) => bad
                                .push(format!("{name}{mode}: upstream decodes it now: compare it")),
                            (Err(_), true) => {}
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(paths.len() > 60, "only {} images compared", paths.len());
    assert!(results.is_empty(), "{}", results.join("\n"));
}
