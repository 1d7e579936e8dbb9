//! `crit`: decode, encode, show, info and explore CRIU images.
fn main() {
    eprintln!("crit: not built yet");
    std::process::exit(1);
}
