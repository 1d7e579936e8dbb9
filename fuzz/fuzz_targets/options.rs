//! Feeds arbitrary bytes to the command-line parser (as NUL-separated words) and to the
//! configuration-file reader (as a file's text, whose words are parsed in turn): nothing may
//! panic, whatever the words.

#![no_main]

use criu::cli::{self, config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut line = vec!["--no-default-config".to_string()];
    line.extend(text.split('\0').map(str::to_string));
    let _ = cli::parse(&line);
    if let Ok(words) = config::words_of(&text, "fuzz.conf") {
        let mut line = vec!["--no-default-config".to_string(), "dump".to_string()];
        line.extend(words);
        let _ = cli::parse(&line);
    }
});
