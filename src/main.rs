//! The `criu` binary.
fn main() {
    std::process::exit(criu::run(std::env::args_os().collect()));
}
