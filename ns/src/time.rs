//! time namespace: the monotonic and boottime offsets (`timens-N.img`). A time namespace
//! takes offsets only before its first task enters it, and a multi-threaded criu cannot enter
//! one: the restored root's stub unshares one for its children, criu writes the offsets
//! through /proc, and the stub then enters it itself (injected setns).

use std::path::Path;

use criu_proto::images::{TimensEntry, Timespec};
use criu_proto::{ImageKind, ImageReader, ImageWriter};
use criu_tracee::remote::Remote;

use crate::error::{image, io, tracee, NsImageError};

const KIND: &str = "time";

/// Parses /proc/PID/timens_offsets ("monotonic SECS NSECS" and "boottime SECS NSECS").
fn parse_offsets(text: &str) -> Option<TimensEntry> {
    let mut e = TimensEntry::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (clock, secs, nsecs) = (f.next()?, f.next()?, f.next()?);
        // Negative offsets keep their two's complement bits, as CRIU stores them.
        let t = Timespec {
            tv_sec: secs.parse::<i64>().ok()? as u64,
            tv_nsec: nsecs.parse::<u64>().ok()?,
        };
        match clock {
            "monotonic" => e.monotonic = t,
            "boottime" => e.boottime = t,
            _ => {}
        }
    }
    Some(e)
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(io(KIND, format!("cannot read {path}")))?;
    let e = parse_offsets(&text).ok_or_else(|| NsImageError::Bad {
        kind: KIND,
        what: format!("cannot parse {path}: {text:?}"),
    })?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::TIMENS, Some(id.into())).map_err(image(KIND))?;
    w.write(&e).map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    Ok(())
}

/// Moves the stub `pid` (single-threaded, driven through `r`) into a new time namespace with
/// the dumped offsets. Its children are made later and inherit it.
pub fn restore(r: &mut Remote, pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let e: TimensEntry = ImageReader::open(dir, &ImageKind::TIMENS, Some(id.into()))
        .and_then(|mut r| r.read())
        .map_err(image(KIND))?
        .ok_or_else(|| NsImageError::Bad {
            kind: KIND,
            what: format!("timens-{id}.img is empty"),
        })?;
    let t = tracee(KIND);
    r.call(
        "unshare(CLONE_NEWTIME)",
        libc::SYS_unshare,
        &[libc::CLONE_NEWTIME as u64],
    )
    .map_err(&t)?;
    let path = format!("/proc/{pid}/timens_offsets");
    let text = format!(
        "monotonic {} {}\nboottime {} {}\n",
        e.monotonic.tv_sec as i64,
        e.monotonic.tv_nsec,
        e.boottime.tv_sec as i64,
        e.boottime.tv_nsec
    );
    // One write per clock: the kernel takes a single line per write reliably.
    for line in text.lines() {
        std::fs::write(&path, line)
            .map_err(io(KIND, format!("cannot write {line:?} to {path}")))?;
    }
    let fd = r
        .open("/proc/self/ns/time_for_children", libc::O_RDONLY)
        .map_err(&t)?;
    r.call(
        "setns(time)",
        libc::SYS_setns,
        &[fd, libc::CLONE_NEWTIME as u64],
    )
    .map_err(&t)?;
    r.close(fd).map_err(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_negative_seconds() {
        let e = parse_offsets("monotonic -5 0\nboottime 86400 250\n").unwrap();
        assert_eq!(e.monotonic.tv_sec as i64, -5);
        assert_eq!((e.boottime.tv_sec, e.boottime.tv_nsec), (86400, 250));
        assert!(parse_offsets("monotonic x 0").is_none());
    }
}
