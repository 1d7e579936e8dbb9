//! The man pages and completions in docs/ are what `cargo run --example gen_docs` makes from
//! the option table (so they never drift from the code), and `man -l` renders the pages
//! without warnings.

use std::path::Path;
use std::process::Command;

#[test]
fn checked_in_docs_are_generated_from_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (path, text) in criu::docs::files() {
        let on_disk = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(
            on_disk == text,
            "docs/{path} is stale: run `cargo run --example gen_docs`"
        );
    }
}

#[test]
fn man_renders_both_pages_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
    for page in ["criu.8", "crit.1"] {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(root.join(page))
            .env("MANWIDTH", "80")
            .output()
            .expect("man is not installed (.ci/run installs man-db)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{page}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("OPTIONS") || text.contains("COMMANDS"),
            "{page}: {text}"
        );
    }
}

#[test]
fn bash_completion_offers_commands_options_and_values() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/completions/criu.bash");
    let complete = |line: &str| -> String {
        let words: Vec<&str> = line.split(' ').collect();
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _criu; echo \"${{COMPREPLY[*]}}\"",
            script.display(),
            quoted.join(" "),
            words.len() - 1
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("criu pre"), "pre-dump");
    assert_eq!(complete("criu dump --tcp-e"), "--tcp-established");
    assert_eq!(complete("criu restore --network-lock nf"), "nftables");
    assert!(complete("criu check --feature mem_d").contains("mem_dirty_track"));
    assert_eq!(
        complete("criu dump --manage-cgroups=st"),
        "--manage-cgroups=strict"
    );
}

#[test]
fn zsh_and_fish_completions_parse_and_fish_offers_options() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/completions");
    let zsh = Command::new("zsh")
        .arg("-n")
        .arg(dir.join("_criu"))
        .output()
        .expect("zsh is not installed (.ci/run installs it)");
    assert!(
        zsh.status.success(),
        "{}",
        String::from_utf8_lossy(&zsh.stderr)
    );
    let script = format!(
        "source {}; complete -C'criu --tcp-e'",
        dir.join("criu.fish").display()
    );
    let fish = Command::new("fish")
        .args(["-c", &script])
        .output()
        .expect("fish is not installed (.ci/run installs it)");
    assert!(
        fish.status.success(),
        "{}",
        String::from_utf8_lossy(&fish.stderr)
    );
    assert!(String::from_utf8_lossy(&fish.stdout).starts_with("--tcp-established\t"));
}
