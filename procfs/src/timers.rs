//! `/proc/PID/timers`: the POSIX timers (timer_create) of a process, four lines each.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, lines, show};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimer {
    pub id: i32,
    pub signo: i32,
    /// sigev_value (the pointer form).
    pub sigev_value: u64,
    /// SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD, or'ed with SIGEV_THREAD_ID when a thread
    /// is the target.
    pub sigev_notify: i32,
    /// The pid (or tid, with SIGEV_THREAD_ID) that gets the signal.
    pub notify_pid: i32,
    pub clock_id: i32,
}

pub fn parse_timers(text: impl AsRef<[u8]>) -> Result<Vec<PosixTimer>, ParseError> {
    let all: Vec<(usize, &[u8])> = lines(text.as_ref()).collect();
    if !all.len().is_multiple_of(4) {
        return Err(ParseError::whole(format!(
            "{} lines is not a whole number of timers (4 lines each)",
            all.len()
        )));
    }
    all.chunks_exact(4).map(parse_timer).collect()
}

fn field<'a>(line: (usize, &'a [u8]), key: &str) -> Result<&'a [u8], ParseError> {
    let (n, l) = line;
    match text::key_value(l) {
        Some((k, v)) if k == key.as_bytes() => Ok(v),
        _ => Err(ParseError::new(
            n,
            format!("expected {key}, found {}", show(l)),
        )),
    }
}

fn parse_timer(group: &[(usize, &[u8])]) -> Result<PosixTimer, ParseError> {
    let id = field(group[0], "ID")?;
    let signal = field(group[1], "signal")?;
    let notify = field(group[2], "notify")?;
    let clock = field(group[3], "ClockID")?;
    let (n1, n2) = (group[1].0, group[2].0);

    // "10/0000000000001234"; very old kernels print "(null)" for a zero value.
    let sig_slash = signal
        .iter()
        .position(|&b| b == b'/')
        .ok_or_else(|| ParseError::new(n1, format!("bad signal {}", show(signal))))?;
    let value = &signal[sig_slash + 1..];
    let sigev_value = if value == b"(null)" {
        0
    } else {
        text::hex_u64(value, n1, "sigev value")?
    };

    // "signal/pid.21601" or "signal/tid.21601".
    let bad = || ParseError::new(n2, format!("bad notify {}", show(notify)));
    let slash = notify.iter().position(|&b| b == b'/').ok_or_else(bad)?;
    let how = match &notify[..slash] {
        b"signal" => libc::SIGEV_SIGNAL,
        b"none" => libc::SIGEV_NONE,
        b"thread" => libc::SIGEV_THREAD,
        _ => return Err(bad()),
    };
    let (who, pid) = notify[slash + 1..].split_at(
        notify[slash + 1..]
            .iter()
            .position(|&b| b == b'.')
            .ok_or_else(bad)?,
    );
    let thread_bit = match who {
        b"tid" => libc::SIGEV_THREAD_ID,
        b"pid" => 0,
        _ => return Err(bad()),
    };
    Ok(PosixTimer {
        id: text::dec(id, group[0].0, "timer id")?,
        signo: text::dec(&signal[..sig_slash], n1, "signal number")?,
        sigev_value,
        sigev_notify: how | thread_bit,
        notify_pid: text::dec(&pid[1..], n2, "notify pid")?,
        clock_id: text::dec(clock, group[3].0, "clock id")?,
    })
}

pub fn read_timers(pid: i32) -> Result<Vec<PosixTimer>> {
    read_parsed(pid_path(pid, "timers"), |b| parse_timers(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured: three timers made with SIGEV_THREAD_ID/SIGRTMIN, SIGEV_NONE, SIGEV_SIGNAL/SIGUSR1.
    const SAMPLE: &str =
        "ID: 2\nsignal: 34/0000000000000000\nnotify: signal/tid.21601\nClockID: 7\n\
        ID: 1\nsignal: 0/0000000000000000\nnotify: none/pid.21601\nClockID: 0\n\
        ID: 0\nsignal: 10/0000000000001234\nnotify: signal/pid.21601\nClockID: 1\n";

    #[test]
    fn parses_captured_timers() {
        let v = parse_timers(SAMPLE).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            PosixTimer {
                id: 2,
                signo: 34,
                sigev_value: 0,
                sigev_notify: libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID,
                notify_pid: 21601,
                clock_id: libc::CLOCK_BOOTTIME,
            }
        );
        assert_eq!(
            (v[1].sigev_notify, v[1].clock_id),
            (libc::SIGEV_NONE, libc::CLOCK_REALTIME)
        );
        assert_eq!(
            (v[2].signo, v[2].sigev_value, v[2].sigev_notify),
            (libc::SIGUSR1, 0x1234, libc::SIGEV_SIGNAL)
        );
        assert!(parse_timers("").unwrap().is_empty());
    }

    #[test]
    fn bad_timers() {
        let err = |t: &str| parse_timers(t).unwrap_err().to_string();
        assert_eq!(
            err("ID: 1\n"),
            "1 lines is not a whole number of timers (4 lines each)"
        );
        assert_eq!(
            err(&SAMPLE.replace("notify: none/pid", "notify: odd/pid")),
            "line 7: bad notify \"odd/pid.21601\""
        );
        assert_eq!(
            err(&SAMPLE.replace("ClockID: 7", "Clock: 7")),
            "line 4: expected ClockID, found \"Clock: 7\""
        );
        assert_eq!(
            err(&SAMPLE.replace("34/", "34-")),
            "line 2: bad signal \"34-0000000000000000\""
        );
    }
}
