//! Compiles proto/*.proto without a system protoc: protox parses them, prost-build generates the
//! typed messages, and the encoded descriptor set (custom field options included) is embedded
//! for prost-reflect.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();

    let mut compiler = protox::Compiler::new([&dir])?;
    compiler.include_imports(true);
    compiler.open_files(&files)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // prost-types drops custom options, so the embedded set is encoded by protox itself.
    std::fs::write(
        out_dir.join("criu_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut fds = compiler.file_descriptor_set();
    fds.file
        .retain(|file| file.package() == "criu" || file.package() == "criu.rpc");
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)?;
    Ok(())
}
