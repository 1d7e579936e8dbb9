//! Robust release. Whatever happens to criu (an error, SIGINT/SIGTERM/SIGHUP/SIGQUIT, a panic),
//! every task must go on running as it was. Plain seized tasks need nothing from us: the kernel
//! detaches and resumes them when their tracer thread exits. Two things need work first, and
//! they are recorded here in lock-free tables a signal handler can read:
//!
//! * an injection in flight: saved registers, sigmask, overwritten code bytes, the scratch
//!   mapping. Only the tracer thread that owns the task can ptrace it, so a fatal signal makes
//!   the handler send `release_signal()` to every owner thread, whose handler undoes its own
//!   injections and detaches those tasks;
//! * a frozen cgroup: the handler writes the thaw value to the open control file.
//!
//! Code here that a handler runs allocates nothing and takes no locks.

use crate::fault;
use crate::raw;
use crate::regs::{Regs, REGS_WORDS};
use nix::errno::Errno;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst,
};
use std::sync::Once;

const SLOTS: usize = 256;

pub(crate) const F_REGS: u32 = 1;
pub(crate) const F_SIGMASK: u32 = 2;
pub(crate) const F_CODE: u32 = 4;
pub(crate) const F_SCRATCH: u32 = 8;
pub(crate) const F_RUNNING: u32 = 16;
/// The emergency path has undone this injection and detached the task.
pub(crate) const F_RELEASED: u32 = 32;

/// What must be undone for one task while an injection is in flight.
pub(crate) struct Slot {
    tid: AtomicI32,
    owner: AtomicI32,
    flags: AtomicU32,
    regs: [AtomicU64; REGS_WORDS],
    sigmask: AtomicU64,
    code_addr: AtomicU64,
    code_bytes: AtomicU64,
    scratch_addr: AtomicU64,
    scratch_len: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            tid: AtomicI32::new(0),
            owner: AtomicI32::new(0),
            flags: AtomicU32::new(0),
            regs: [const { AtomicU64::new(0) }; REGS_WORDS],
            sigmask: AtomicU64::new(0),
            code_addr: AtomicU64::new(0),
            code_bytes: AtomicU64::new(0),
            scratch_addr: AtomicU64::new(0),
            scratch_len: AtomicU64::new(0),
        }
    }

    fn regs(&self) -> Regs {
        let mut words = [0u64; REGS_WORDS];
        for (w, a) in words.iter_mut().zip(&self.regs) {
            *w = a.load(SeqCst);
        }
        Regs::from_words(words)
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

const FREEZERS: usize = 8;
static FREEZER_FD: [AtomicI32; FREEZERS] = [const { AtomicI32::new(-1) }; FREEZERS];
static FREEZER_THAW: [AtomicPtr<u8>; FREEZERS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; FREEZERS];
static FREEZER_THAW_LEN: [AtomicUsize; FREEZERS] = [const { AtomicUsize::new(0) }; FREEZERS];

static DYING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
const FATAL: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The signal a fatal-signal handler sends to tracer threads so they release their tasks.
pub fn release_signal() -> i32 {
    libc::SIGRTMAX() - 1
}

/// A claimed slot: the in-flight record of one injection. Dropping it forgets the record (the
/// injector has restored everything by then, or the emergency path did).
pub(crate) struct Record {
    slot: &'static Slot,
}

impl Record {
    /// Claims a slot for `tid`, owned by the calling thread.
    pub(crate) fn claim(tid: i32) -> Option<Record> {
        install();
        for slot in &TABLE {
            if slot.tid.compare_exchange(0, -1, SeqCst, SeqCst).is_ok() {
                slot.flags.store(0, SeqCst);
                slot.owner.store(raw::gettid(), SeqCst);
                slot.tid.store(tid, SeqCst);
                return Some(Record { slot });
            }
        }
        None
    }

    pub(crate) fn save_regs(&self, regs: &Regs) {
        for (a, w) in self.slot.regs.iter().zip(regs.to_words()) {
            a.store(w, SeqCst);
        }
        self.set(F_REGS);
    }

    pub(crate) fn save_sigmask(&self, mask: u64) {
        self.slot.sigmask.store(mask, SeqCst);
        self.set(F_SIGMASK);
    }

    pub(crate) fn save_code(&self, addr: u64, bytes: [u8; 3]) {
        self.slot.code_addr.store(addr, SeqCst);
        self.slot.code_bytes.store(
            u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0])),
            SeqCst,
        );
        self.set(F_CODE);
    }

    pub(crate) fn save_scratch(&self, addr: u64, len: u64) {
        self.slot.scratch_addr.store(addr, SeqCst);
        self.slot.scratch_len.store(len, SeqCst);
        self.set(F_SCRATCH);
    }

    pub(crate) fn set(&self, flag: u32) {
        self.slot.flags.fetch_or(flag, SeqCst);
    }

    pub(crate) fn clear(&self, flag: u32) {
        self.slot.flags.fetch_and(!flag, SeqCst);
    }

    /// Whether the emergency path has already undone this injection.
    pub(crate) fn released(&self) -> bool {
        self.slot.flags.load(SeqCst) & F_RELEASED != 0
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.slot.flags.store(0, SeqCst);
        self.slot.owner.store(0, SeqCst);
        self.slot.tid.store(0, SeqCst);
    }
}

/// A frozen cgroup to thaw if criu dies. Dropping it unregisters (and closes) it.
pub(crate) struct FrozenCgroup {
    index: usize,
}

impl FrozenCgroup {
    pub(crate) fn register(file: std::fs::File, thaw: &'static [u8]) -> Option<FrozenCgroup> {
        use std::os::fd::IntoRawFd;
        install();
        let fd = file.into_raw_fd();
        for (index, slot) in FREEZER_FD.iter().enumerate() {
            if slot.compare_exchange(-1, -2, SeqCst, SeqCst).is_ok() {
                FREEZER_THAW[index].store(thaw.as_ptr().cast_mut(), SeqCst);
                FREEZER_THAW_LEN[index].store(thaw.len(), SeqCst);
                slot.store(fd, SeqCst);
                return Some(FrozenCgroup { index });
            }
        }
        // SAFETY: fd came from into_raw_fd above and is closed once.
        unsafe { libc::close(fd) };
        None
    }
}

impl Drop for FrozenCgroup {
    fn drop(&mut self) {
        let fd = FREEZER_FD[self.index].swap(-2, SeqCst);
        if fd >= 0 {
            // SAFETY: the fd was ours (registered above) and is closed once.
            unsafe { libc::close(fd) };
        }
        FREEZER_FD[self.index].store(-1, SeqCst);
    }
}

/// Installs the fatal-signal handlers, the release-signal handler and the panic hook (once).
/// Called by everything that seizes or freezes; signals whose disposition is SIG_IGN stay so.
pub fn install() {
    INSTALL.call_once(|| {
        // The fault knobs are read now: a handler that injects must not read the environment.
        fault::init();
        for sig in FATAL {
            install_handler(sig, on_fatal as extern "C" fn(i32) as usize, true);
        }
        install_handler(
            release_signal(),
            on_release as extern "C" fn(i32) as usize,
            false,
        );
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Undo this thread's injections before anything else: the unwind may not reach the
            // injector's Drop (abort, panic while panicking, the main thread ending the process).
            release_own();
            if raw::gettid() == std::process::id() as i32 {
                release_others(false);
            }
            previous(info);
        }));
    });
}

fn install_handler(sig: i32, handler: usize, keep_ignored: bool) {
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask, SIG_DFL).
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t inside act.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: act and old are valid sigaction structs; the handler only uses async-signal-safe
    // calls (raw syscalls and atomics).
    unsafe { libc::sigaction(sig, &act, &mut old) };
    if keep_ignored && old.sa_sigaction == libc::SIG_IGN {
        // SAFETY: puts back the disposition read above.
        unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    }
}

extern "C" fn on_fatal(sig: i32) {
    if !DYING.swap(true, SeqCst) {
        release_everything();
    }
    // Die of the signal as if nothing had caught it; it is blocked in this handler, so it is
    // delivered when the handler returns.
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: dfl is a valid sigaction.
    unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    let _ = raw::tgkill(std::process::id() as i32, raw::gettid(), sig);
}

extern "C" fn on_release(_sig: i32) {
    release_own();
    if DYING.load(SeqCst) {
        // The process is about to die of a fatal signal: this thread must not touch the
        // released tasks again, so it waits here for the end.
        loop {
            // SAFETY: pause takes no arguments.
            unsafe { libc::pause() };
        }
    }
}

/// Thaws frozen cgroups, undoes every in-flight injection in the process and detaches those
/// tasks. For a process about to exit: other tracer threads stop in their handler for good.
pub fn release_everything() {
    DYING.store(true, SeqCst);
    thaw_all();
    release_own();
    release_others(true);
}

fn thaw_all() {
    for i in 0..FREEZERS {
        let fd = FREEZER_FD[i].load(SeqCst);
        let ptr = FREEZER_THAW[i].load(SeqCst);
        let len = FREEZER_THAW_LEN[i].load(SeqCst);
        if fd >= 0 && !ptr.is_null() {
            // SAFETY: ptr/len describe a 'static byte string registered with the fd.
            unsafe { libc::pwrite(fd, ptr.cast(), len, 0) };
        }
    }
}

/// Asks every other owner thread to release its tasks and waits (up to 2 s) until they have.
fn release_others(wait: bool) {
    let me = raw::gettid();
    let pid = std::process::id() as i32;
    let mut asked = [0i32; SLOTS];
    let mut n = 0;
    for slot in &TABLE {
        let owner = slot.owner.load(SeqCst);
        if slot.tid.load(SeqCst) > 0 && owner > 0 && owner != me && !asked[..n].contains(&owner) {
            asked[n] = owner;
            n += 1;
            let _ = raw::tgkill(pid, owner, release_signal());
        }
    }
    if !wait {
        return;
    }
    for _ in 0..2000 {
        let pending = TABLE.iter().any(|s| {
            let owner = s.owner.load(SeqCst);
            s.tid.load(SeqCst) > 0
                && asked[..n].contains(&owner)
                && s.flags.load(SeqCst) & F_RELEASED == 0
        });
        if !pending {
            return;
        }
        sleep_us(1000);
    }
}

/// Undoes the in-flight injections owned by the calling thread.
pub fn release_own() {
    let me = raw::gettid();
    for slot in &TABLE {
        let tid = slot.tid.load(SeqCst);
        if tid > 0 && slot.owner.load(SeqCst) == me && slot.flags.load(SeqCst) & F_RELEASED == 0 {
            undo(slot, tid);
            slot.flags.store(F_RELEASED, SeqCst);
        }
    }
}

fn undo(slot: &Slot, tid: i32) {
    let flags = slot.flags.load(SeqCst);
    if flags & F_RUNNING != 0 {
        // The task runs injected code: stop it first (bounded: it may already be stopped with
        // its report consumed).
        let _ = raw::interrupt(tid);
        for _ in 0..500 {
            match raw::wait_raw(tid, libc::WNOHANG) {
                Ok((0, _)) => sleep_us(1000),
                Ok((_, status)) if libc::WIFSTOPPED(status) => break,
                _ => return, // gone
            }
        }
    }
    if flags & F_CODE != 0 {
        let mut bytes = slot.code_bytes.load(SeqCst).to_le_bytes();
        let _ = raw::proc_mem(tid, slot.code_addr.load(SeqCst), &mut bytes[..3], true);
    }
    if flags & F_REGS != 0 {
        let regs = slot.regs();
        let _ = raw::set_regs(tid, &regs.raw);
        if flags & F_SCRATCH != 0 {
            let args = [
                slot.scratch_addr.load(SeqCst),
                slot.scratch_len.load(SeqCst),
                0,
                0,
                0,
                0,
            ];
            let mut deferred = 0;
            let _ = syscall_at_ip(tid, &regs, libc::SYS_munmap, &args, None, &mut deferred);
            let _ = raw::set_regs(tid, &regs.raw);
        }
    }
    if flags & F_SIGMASK != 0 {
        let _ = raw::set_sigmask(tid, slot.sigmask.load(SeqCst));
    }
    let _ = raw::detach(tid, 0);
}

fn sleep_us(us: u64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: (us * 1000) as i64,
    };
    // SAFETY: nanosleep reads ts and may write the remainder to a null pointer (ignored).
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// The bytes of `syscall; int3`.
pub(crate) const SYSCALL_INT3: [u8; 3] = [0x0f, 0x05, 0xcc];

/// Runs syscall `nr` in a stopped task by writing `syscall; int3` over the code at `base.rip`
/// (through /proc/TID/mem, which writes read-only code), and puts the code back. Leaves the
/// registers as the syscall left them: the caller sets them back. Signals other than the trap
/// that stop the task meanwhile are suppressed and added to `deferred` (bit n-1 for signal n).
pub(crate) fn syscall_at_ip(
    tid: i32,
    base: &Regs,
    nr: i64,
    args: &[u64; 6],
    record: Option<&Record>,
    deferred: &mut u64,
) -> Result<i64, Errno> {
    let ip = base.ip();
    let mut saved = [0u8; 3];
    raw::proc_mem(tid, ip, &mut saved, false)?;
    if let Some(r) = record {
        r.save_code(ip, saved);
    }
    let mut code = SYSCALL_INT3;
    let result = raw::proc_mem(tid, ip, &mut code, true).and_then(|()| {
        let mut regs = *base;
        regs.set_syscall(nr, args);
        let trap = Until::Int3 {
            ip: ip + SYSCALL_INT3.len() as u64,
        };
        run_to_trap(tid, &regs, trap, record, deferred)
    });
    let put_back = raw::proc_mem(tid, ip, &mut saved, true);
    if put_back.is_ok() {
        if let Some(r) = record {
            r.clear(F_CODE);
        }
    }
    let ret = result?;
    put_back?;
    Ok(ret)
}

/// Whether the thread's SIGTRAP stop is our int3 (the kernel's trap, SI_KERNEL), not a
/// SIGTRAP sent by a process (si_code <= 0). Unknown counts as ours.
fn is_breakpoint(tid: i32) -> bool {
    nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(tid))
        .map_or(true, |info| info.si_code > 0)
}

/// Where an injected syscall ends.
#[derive(Clone, Copy)]
pub(crate) enum Until {
    /// At the int3 after it (rip = `ip` past the int3); the result is in rax.
    Int3 { ip: u64 },
    /// At the landing's stop: signal `sig` seen with rip = `ip`; the result is in r15.
    Landing { ip: u64, sig: i32 },
}

/// Sets `regs`, resumes the task and waits until the injected syscall is done (`until`);
/// returns its result. Signals other than ours that stop the task meanwhile are suppressed
/// and added to `deferred`.
pub(crate) fn run_to_trap(
    tid: i32,
    regs: &Regs,
    until: Until,
    record: Option<&Record>,
    deferred: &mut u64,
) -> Result<i64, Errno> {
    raw::set_regs(tid, &regs.raw)?;
    if let Some(r) = record {
        r.set(F_RUNNING);
    }
    raw::cont(tid, 0)?;
    let call = fault::call_running();
    let after = loop {
        let (_, status) = raw::wait_raw(tid, 0)?;
        if !libc::WIFSTOPPED(status) {
            return Err(Errno::ESRCH);
        }
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if event == 0 {
            match until {
                Until::Int3 { .. } if sig == libc::SIGTRAP && is_breakpoint(tid) => {
                    break raw::get_regs(tid)?;
                }
                Until::Landing { ip, sig: ours } if sig == ours => {
                    let regs = raw::get_regs(tid)?;
                    if regs.rip == ip {
                        break regs;
                    }
                }
                _ => {}
            }
            // Any other signal, one like ours that someone sent included (the session lets
            // it through), is held back and sent again after.
            *deferred |= 1u64 << (sig - 1);
        }
        raw::cont(tid, 0)?;
    };
    if let Some(r) = record {
        r.clear(F_RUNNING);
    }
    fault::call_stopped(call);
    match until {
        Until::Int3 { ip } if after.rip == ip => Ok(after.rax as i64),
        Until::Landing { .. } => Ok(after.r15 as i64),
        Until::Int3 { .. } => Err(Errno::EFAULT),
    }
}
