//! Writes the man pages and shell completions made from criu's option table under `docs/`
//! (or the directory given): `cargo run --example gen_docs [DIR]`. tests/docs.rs checks that
//! the files in the repository are what this writes.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs"),
        PathBuf::from,
    );
    for (path, text) in criu::docs::files() {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
