//! `ns_launch OUTSIDE_ID PROGRAM ARGS...`: starts PROGRAM as the init (pid 1) of new user,
//! pid, uts, ipc and net namespaces, as root inside a user namespace whose ids 0..65536 are
//! OUTSIDE_ID.. outside (what `unshare --map-users` does with newuidmap, without needing it).
//! This process stays in criu's namespaces and waits for the init.

use std::ffi::CString;

fn die(what: &str) -> ! {
    eprintln!("ns_launch: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: ns_launch OUTSIDE_ID PROGRAM ARGS...");
        std::process::exit(2);
    }
    let outside: u32 = args[1].parse().unwrap_or_else(|_| die("bad OUTSIDE_ID"));
    let mut go = [0i32; 2];
    // SAFETY: pipe fills the two fds.
    if unsafe { libc::pipe(go.as_mut_ptr()) } != 0 {
        die("pipe");
    }
    // SAFETY: the child only makes syscalls and execs.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: namespace and id syscalls with integer arguments; the child then waits for
        // its maps on the pipe and execs.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                die("unshare(CLONE_NEWUSER)");
            }
            libc::close(go[1]);
            let mut b = [0u8; 1];
            libc::read(go[0], b.as_mut_ptr().cast(), 1);
            if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                die("becoming root inside");
            }
            let flags =
                libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET;
            if libc::unshare(flags) != 0 {
                die("unshare");
            }
            let init = libc::fork();
            if init == 0 {
                let prog: Vec<CString> = args[2..]
                    .iter()
                    .map(|a| CString::new(a.as_str()).unwrap_or_default())
                    .collect();
                let mut argv: Vec<*const libc::c_char> = prog.iter().map(|a| a.as_ptr()).collect();
                argv.push(std::ptr::null());
                libc::execv(argv[0], argv.as_ptr());
                die("exec");
            }
            let mut status = 0;
            libc::waitpid(init, &mut status, 0);
            libc::_exit(0);
        }
    }
    // SAFETY: closing our read end.
    unsafe { libc::close(go[0]) };
    // The child is in its user namespace once its uid_map is writable.
    for name in ["uid_map", "gid_map"] {
        let path = format!("/proc/{child}/{name}");
        let mut tries = 0;
        while std::fs::write(&path, format!("0 {outside} 65536\n")).is_err() {
            tries += 1;
            if tries > 1000 {
                die(&format!("writing {path}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    // SAFETY: one byte on the pipe lets the child go on.
    unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) };
    let mut status = 0;
    // SAFETY: waitpid writes the status.
    unsafe { libc::waitpid(child, &mut status, 0) };
}
