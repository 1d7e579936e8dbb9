//! Usage and help text.

/// The version criu(8) users and tools expect to parse, and ours.
pub const CRIU_COMPAT_VERSION: &str = "4.2";

pub fn version() -> String {
    format!(
        "Version: {CRIU_COMPAT_VERSION}\nGitID: criu-rs-{}\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub const SHORT: &str = "
Usage:
  criu dump|pre-dump -t PID [<options>]
  criu restore [<options>]
  criu check [--feature FEAT]
  criu page-server
  criu service [<options>]
  criu dedup
  criu lazy-pages -D DIR [<options>]
  criu exec -t PID SYSCALL [ARGS...]

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       pre-dump task(s) minimizing their frozen time
  restore        restore a process/tree
  check          checks whether the kernel support is up-to-date
  page-server    launch page server
  service        launch service
  dedup          remove duplicates in memory dump
  exec           run a system call inside a stopped task
  cpuinfo dump   writes cpu information into image file
  cpuinfo check  validates cpu information read from image file
";

pub const MORE: &str = "
Try -h|--help for more info
";

pub const OPTIONS: &str = "
Boolean long options also take a --no- prefix that turns them off
(for example --display-stats and --no-display-stats).

Dump/restore:
  -t|--tree PID            the root of the process tree to checkpoint
  -d|--restore-detached    do not wait for the restored tree (service: run as daemon)
  -S|--restore-sibling     restore the root task as a sibling of criu
  -s|--leave-stopped       leave the tree stopped after dump
  -R|--leave-running       leave the tree running after dump
  -D|--images-dir DIR      directory of image files (default: .)
  -W|--work-dir DIR        directory for logs, pidfiles and stats (default: images dir)
     --pidfile FILE        write the root task's (or server's) pid to FILE
     --cpu-cap[=CAPS]      cpu, fpu, ins, all, none; ^CAP turns one off
     --exec-cmd            after restore, exec the command given after --
     --freeze-cgroup PATH  freeze the tree through this cgroup
     --timeout SECONDS     bound on collecting/freezing tasks (default 10)
     --lazy-pages, --stream, --mntns-compat-mode, --network-lock METHOD,
     --unprivileged, --allow-uprobes, --weak-sysctls

External and special resources:
     --external RES        an external resource (tty[], file[], dev[], unix[], mnt[], veth[]...)
     --tcp-established, --skip-in-flight, --tcp-close
  -r|--root PATH           root of the restored tree
     --evasive-devices, --link-remap, --ghost-limit SIZE, --ghost-fiemap
     --action-script FILE  run FILE at each action (repeatable)
  -j|--shell-job           the tree is a shell job (shares criu's tty/session)
  -l|--file-locks          dump and restore file locks
  -L|--libdir DIR          plugin directory
     --force-irmap, --irmap-scan-path PATH
     --manage-cgroups[=MODE] none, props, soft (default), full, strict, ignore
     --cgroup-root [CTL:]PATH, --cgroup-props STR, --cgroup-props-file FILE,
     --cgroup-dump-controller NAME, --cgroup-yard PATH
     --lsm-profile TYPE:NAME, --lsm-mount-context CTX
     --skip-mnt PATH, --enable-fs NAMES, -M|--ext-mount-map KEY:VAL|auto
     --inherit-fd fd[N]:RES, --veth-pair IN=OUT, -J|--join-ns NS:PATH, --empty-ns net
  -x|--ext-unix-sk[=INODES]
     --file-validation filesize|buildid, --skip-file-rwx-check

Check:
     --extra, --experimental, --all, --feature NAME (list: show all names)

Logging:
  -o|--log-file FILE       log file (relative to the work dir)
     --log-pid             one log file per process (FILE.PID)
  -v[v...]|-vNUM|--verbosity[=NUM]
                           0 messages, 1 errors, 2 warnings (default),
                           3 information and timestamps, 4 debug
     --display-stats       print dump/restore statistics

Memory:
     --track-mem, --prev-images-dir DIR, --page-server, --auto-dedup,
     --pre-dump-mode splice|read

Page server / service:
     --address ADDR, --port PORT, --ps-socket FD, --status-fd FD,
     --tls, --tls-cacert, --tls-cacrl, --tls-cert, --tls-key, --tls-no-cn-verify

Configuration:
     --config FILE         read options from FILE
     --no-default-config   do not read /etc/criu/default.conf or ~/.criu/default.conf

Other:
     --close FD            close FD before running
  -h|--help, -V|--version
";
