//! `criu exec -t PID SYSCALL ARGS...`: run one system call inside a process. An argument that
//! starts with `&` is copied into the task (NUL-terminated) and passed as a pointer to it; any
//! other argument is a number written as strtol(3) with base 0 reads it: decimal, `0x` hex,
//! leading `0` octal, optional sign.

use crate::error::TraceeError;
use crate::inject::Injector;
use crate::syscall_table;
use crate::tree::SeizedProcess;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("syscall name required")]
    NoSyscall,
    #[error("unknown syscall {0:?} (not in the x86_64 table)")]
    UnknownSyscall(String),
    #[error("too many arguments for {name}: {count} (at most 6)")]
    TooManyArgs { name: String, count: usize },
    #[error("argument {index} {text:?}: {why}")]
    BadNumber {
        index: usize,
        text: String,
        why: &'static str,
    },
    #[error("pid {pid}: {source}")]
    Tracee { pid: i32, source: TraceeError },
}

/// One argument of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Number(u64),
    /// Bytes copied into the task (the string plus its NUL); the argument is their address.
    Memory(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub nr: i64,
    pub args: Vec<Arg>,
}

/// Parses `SYSCALL ARGS...`.
pub fn parse(words: &[String]) -> Result<Call, ExecError> {
    let (name, rest) = words.split_first().ok_or(ExecError::NoSyscall)?;
    let nr = syscall_table::number(name).ok_or_else(|| ExecError::UnknownSyscall(name.clone()))?;
    if rest.len() > 6 {
        return Err(ExecError::TooManyArgs {
            name: name.clone(),
            count: rest.len(),
        });
    }
    let mut args = Vec::with_capacity(rest.len());
    for (i, word) in rest.iter().enumerate() {
        let arg = match word.strip_prefix('&') {
            Some(s) => {
                let mut bytes = s.as_bytes().to_vec();
                bytes.push(0);
                Arg::Memory(bytes)
            }
            None => Arg::Number(parse_number(word).map_err(|why| ExecError::BadNumber {
                index: i + 1,
                text: word.clone(),
                why,
            })? as u64),
        };
        args.push(arg);
    }
    Ok(Call {
        name: name.clone(),
        nr,
        args,
    })
}

/// A number as strtol(s, &end, 0) reads it, but the whole word must be the number.
pub fn parse_number(text: &str) -> Result<i64, &'static str> {
    let s = text.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, hex)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() {
        return Err("not a number");
    }
    let magnitude = u64::from_str_radix(digits, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => "out of range",
        _ => "not a number",
    })?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or("out of range")?
    } else {
        i64::try_from(magnitude).map_err(|_| "out of range")?
    };
    Ok(value)
}

/// Runs `call` inside process `pid` (all its threads stopped meanwhile) and returns the raw
/// result: the syscall's value, or `-errno`.
pub fn execute(pid: i32, call: &Call, timeout: Duration) -> Result<i64, ExecError> {
    let err = |source| ExecError::Tracee { pid, source };
    let mut process = SeizedProcess::seize(pid, timeout).map_err(err)?;
    let mem_len: usize = call
        .args
        .iter()
        .map(|a| if let Arg::Memory(m) = a { m.len() } else { 0 })
        .sum();
    let result = {
        let leader = process.thread_mut(pid).ok_or_else(|| {
            err(TraceeError::Gone {
                tid: pid,
                how: "leader thread is not running".into(),
            })
        })?;
        let mut inj = Injector::new(leader, mem_len.max(1)).map_err(err)?;
        let mut values = [0u64; 6];
        let mut offset = 0;
        for (v, arg) in values.iter_mut().zip(&call.args) {
            *v = match arg {
                Arg::Number(n) => *n,
                Arg::Memory(bytes) => {
                    let addr = inj.write_data(offset, bytes).map_err(err)?;
                    offset += bytes.len();
                    addr
                }
            };
        }
        let ret = inj
            .syscall(call.nr, &values[..call.args.len()])
            .map_err(err)?;
        inj.finish().map_err(err)?;
        ret
    };
    process.release().map_err(err)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn numbers_read_like_strtol_base_0() {
        assert_eq!(parse_number("42"), Ok(42));
        assert_eq!(parse_number("-1"), Ok(-1));
        assert_eq!(parse_number("+7"), Ok(7));
        assert_eq!(parse_number("0x1F"), Ok(31));
        assert_eq!(parse_number("0X10"), Ok(16));
        assert_eq!(parse_number("010"), Ok(8));
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("-0x10"), Ok(-16));
        assert_eq!(parse_number("  5"), Ok(5));
        assert_eq!(parse_number("-9223372036854775808"), Ok(i64::MIN));
        assert!(parse_number("9223372036854775808").is_err());
        assert!(parse_number("08").is_err());
        assert!(parse_number("12abc").is_err());
        assert!(parse_number("").is_err());
        assert!(parse_number("0x").is_err());
        assert!(parse_number("-").is_err());
    }

    #[test]
    fn parses_the_manual_examples() {
        let c = parse(&words(&["close", "1"])).unwrap();
        assert_eq!((c.nr, c.args.clone()), (3, vec![Arg::Number(1)]));
        let c = parse(&words(&["open", "&/foo/bar", "2"])).unwrap();
        assert_eq!(c.nr, 2);
        assert_eq!(
            c.args,
            vec![Arg::Memory(b"/foo/bar\0".to_vec()), Arg::Number(2)]
        );
        let c = parse(&words(&["lseek", "3", "-1", "0"])).unwrap();
        assert_eq!(c.args[1], Arg::Number(u64::MAX));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(parse(&[]), Err(ExecError::NoSyscall)));
        assert!(matches!(
            parse(&words(&["frobnicate"])),
            Err(ExecError::UnknownSyscall(_))
        ));
        assert!(matches!(
            parse(&words(&["close", "x"])),
            Err(ExecError::BadNumber { index: 1, .. })
        ));
        let seven = words(&["read", "1", "2", "3", "4", "5", "6", "7"]);
        assert!(matches!(
            parse(&seven),
            Err(ExecError::TooManyArgs { count: 7, .. })
        ));
    }
}
