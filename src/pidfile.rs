//! `--pidfile`: created exclusively (mode 0600), holding the pid in decimal without a newline,
//! as CRIU writes it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub fn write(path: &Path, pid: i32) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create pidfile {}: {e}", path.display()))?;
    f.write_all(pid.to_string().as_bytes())
        .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn exclusive_create() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        super::write(&p, 1234).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1234");
        assert!(super::write(&p, 5).is_err());
    }
}
