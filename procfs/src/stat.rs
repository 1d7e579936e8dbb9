//! `/proc/PID/stat` and `/proc/PID/task/TID/stat`: one line of space-separated fields.

use crate::error::{ParseError, Result};
use crate::read::{pid_path, read_parsed, tid_path};
use crate::text::{self, fields, show};

/// All fields of a stat line, in the kernel's order (see proc(5)). Signal masks here are the
/// legacy 64-bit ones; `status` has the same masks too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    pub pid: i32,
    /// The command name between the parentheses; it may itself hold spaces and parentheses.
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    pub tpgid: i32,
    pub flags: u32,
    pub minflt: u64,
    pub cminflt: u64,
    pub majflt: u64,
    pub cmajflt: u64,
    pub utime: u64,
    pub stime: u64,
    pub cutime: i64,
    pub cstime: i64,
    pub priority: i64,
    pub nice: i64,
    pub num_threads: i64,
    pub itrealvalue: i64,
    /// Clock ticks after boot.
    pub start_time: u64,
    /// Bytes.
    pub vsize: u64,
    /// Pages.
    pub rss: i64,
    pub rsslim: u64,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub kstkesp: u64,
    pub kstkeip: u64,
    pub signal: u64,
    pub blocked: u64,
    pub sigignore: u64,
    pub sigcatch: u64,
    pub wchan: u64,
    pub nswap: u64,
    pub cnswap: u64,
    pub exit_signal: i32,
    pub processor: i32,
    pub rt_priority: u32,
    /// SCHED_* policy.
    pub policy: u32,
    pub delayacct_blkio_ticks: u64,
    pub guest_time: u64,
    pub cguest_time: i64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub exit_code: i32,
}

/// Fields after the comm, state through exit_code (kernel 3.5 and later).
const FIELDS_AFTER_COMM: usize = 50;

pub fn parse_stat(text: impl AsRef<[u8]>) -> Result<Stat, ParseError> {
    let text = text::trim(text.as_ref());
    // comm is free text: it runs from the first '(' to the last ')'.
    let open = text
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| ParseError::whole("no '(' before comm"))?;
    let close = text
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&c| c > open)
        .ok_or_else(|| ParseError::whole("no ')' after comm"))?;
    let pid = text::dec(text::trim(&text[..open]), 0, "pid")?;
    let comm = text::lossy(&text[open + 1..close]);

    let rest: Vec<&[u8]> = fields(&text[close + 1..]).collect();
    if rest.len() < FIELDS_AFTER_COMM {
        return Err(ParseError::whole(format!(
            "expected {FIELDS_AFTER_COMM} fields after comm, found {}",
            rest.len()
        )));
    }
    let state = match rest[0] {
        [c] if c.is_ascii_alphabetic() => char::from(*c),
        s => return Err(ParseError::whole(format!("bad state {}", show(s)))),
    };
    // Field numbers in messages count from 1 like proc(5): pid is 1, comm 2, state 3.
    let mut i = 0;
    let mut next = || {
        i += 1;
        (rest[i], i + 3)
    };
    macro_rules! num {
        () => {{
            let (s, no) = next();
            text::dec(s, 0, &format!("field {no}"))?
        }};
    }
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: num!(),
        pgrp: num!(),
        session: num!(),
        tty_nr: num!(),
        tpgid: num!(),
        flags: num!(),
        minflt: num!(),
        cminflt: num!(),
        majflt: num!(),
        cmajflt: num!(),
        utime: num!(),
        stime: num!(),
        cutime: num!(),
        cstime: num!(),
        priority: num!(),
        nice: num!(),
        num_threads: num!(),
        itrealvalue: num!(),
        start_time: num!(),
        vsize: num!(),
        rss: num!(),
        rsslim: num!(),
        start_code: num!(),
        end_code: num!(),
        start_stack: num!(),
        kstkesp: num!(),
        kstkeip: num!(),
        signal: num!(),
        blocked: num!(),
        sigignore: num!(),
        sigcatch: num!(),
        wchan: num!(),
        nswap: num!(),
        cnswap: num!(),
        exit_signal: num!(),
        processor: num!(),
        rt_priority: num!(),
        policy: num!(),
        delayacct_blkio_ticks: num!(),
        guest_time: num!(),
        cguest_time: num!(),
        start_data: num!(),
        end_data: num!(),
        start_brk: num!(),
        arg_start: num!(),
        arg_end: num!(),
        env_start: num!(),
        env_end: num!(),
        exit_code: num!(),
    })
}

pub fn read_stat(pid: i32) -> Result<Stat> {
    read_parsed(pid_path(pid, "stat"), |b| parse_stat(b))
}

pub fn read_thread_stat(pid: i32, tid: i32) -> Result<Stat> {
    read_parsed(tid_path(pid, tid, "stat"), |b| parse_stat(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a process that had renamed itself to "a) b (c)".
    const TRICKY: &str = "20519 (a) b (c)) R 20446 20446 7546 0 -1 4194560 104 0 0 0 0 0 0 0 20 0 1 0 121364 \
        2600960 313 18446744073709551615 94213908803584 94213908806553 140729486613200 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
        94213908815312 94213908816176 94214831435776 140729486621423 140729486621429 140729486621429 140729486622706 0\n";

    #[test]
    fn comm_with_spaces_and_parens() {
        let s = parse_stat(TRICKY).unwrap();
        assert_eq!(s.pid, 20519);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'R');
        assert_eq!(
            (s.ppid, s.pgrp, s.session, s.tty_nr, s.tpgid),
            (20446, 20446, 7546, 0, -1)
        );
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.minflt, 104);
        assert_eq!((s.priority, s.nice, s.num_threads), (20, 0, 1));
        assert_eq!(s.start_time, 121364);
        assert_eq!(s.vsize, 2600960);
        assert_eq!(s.rss, 313);
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!((s.start_code, s.end_code), (94213908803584, 94213908806553));
        assert_eq!(s.start_stack, 140729486613200);
        assert_eq!((s.signal, s.blocked, s.sigignore, s.sigcatch), (0, 0, 0, 0));
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.processor, 1);
        assert_eq!((s.rt_priority, s.policy), (0, 0));
        assert_eq!(
            (s.start_data, s.end_data, s.start_brk),
            (94213908815312, 94213908816176, 94214831435776)
        );
        assert_eq!((s.arg_start, s.arg_end), (140729486621423, 140729486621429));
        assert_eq!((s.env_start, s.env_end), (140729486621429, 140729486622706));
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn masks_and_policy_fields_land_in_place() {
        // Same line with distinct values in the signal masks and scheduling fields.
        let line = "7 (x) S 1 7 7 34816 7 0 0 0 0 0 1 2 -3 -4 -51 -11 2 0 99 100 5 6 7 8 9 10 11 \
            1 2 4 8 12 13 14 17 0 50 1 15 16 -17 18 19 20 21 22 23 24 256\n";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.signal, s.blocked, s.sigignore, s.sigcatch), (1, 2, 4, 8));
        assert_eq!((s.cutime, s.cstime, s.priority, s.nice), (-3, -4, -51, -11));
        assert_eq!((s.rt_priority, s.policy), (50, 1));
        assert_eq!(s.cguest_time, -17);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.exit_code, 256);
    }

    #[test]
    fn bad_stat_lines() {
        let err = |s: &str| parse_stat(s).unwrap_err().to_string();
        assert_eq!(err("12 x R 1"), "no '(' before comm");
        assert_eq!(err("12 (x R 1"), "no ')' after comm");
        assert_eq!(
            err("12 (x) R 1 2"),
            "expected 50 fields after comm, found 3"
        );
        assert_eq!(err(&TRICKY.replace("20519", "z")), "bad pid \"z\"");
        assert_eq!(
            err(&TRICKY.replace(") R 20446", ") R x20446")),
            "bad field 4 \"x20446\""
        );
        assert_eq!(err(&TRICKY.replace(") R ", ") 9 ")), "bad state \"9\"");
    }
}
