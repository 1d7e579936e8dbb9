//! criu(8) in roff: the options from the table, the rest written here.

use crate::cli::docs::{Group, COMMANDS};

/// Escapes text for roff: backslashes, hyphens (so they stay minus signs) and a leading dot.
pub fn esc(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

const DESCRIPTION: &str = "\
criu freezes a running process tree, or a whole container, and saves its state as image files;
\\fBcriu restore\\fR later makes equivalent processes from them, on this machine or another. This
criu is a rewrite of CRIU in Rust: it reads and writes CRIU's images (\\fBcrit\\fR(1) reads
ours), takes CRIU's command line and configuration files, and speaks CRIU's RPC, so container
runtimes (runc, podman) use it in place of CRIU.
";

const ACTION_SCRIPTS: &str = "\
A script given with \\fB\\-\\-action\\-script\\fR runs at each action with the action's name in
\\fBCRTOOLS_SCRIPT_ACTION\\fR: pre\\-dump, post\\-dump, pre\\-restore, setup\\-namespaces (with
\\fBCRTOOLS_INIT_PID\\fR), post\\-setup\\-namespaces, post\\-restore, pre\\-resume, post\\-resume,
network\\-lock, network\\-unlock and orphan\\-pts\\-master. A script that fails fails the command.
Over RPC, with notify_scripts set, each action becomes a NOTIFY message the client answers.
";

const RPC: &str = "\
\\fBcriu swrk\\fR \\fIFD\\fR serves CRIU's protobuf RPC (rpc.proto) over an inherited
SOCK_SEQPACKET socket: this is how runc, podman and go\\-criu drive criu. \\fBcriu service\\fR
serves the same on the unix socket of \\fB\\-\\-address\\fR, one process per client; a client
that is not root may act only on processes and image directories of its own.
";

const EXAMPLES: &str = "\
.nf
Checkpoint a process that leads its own session, then restore it:
    criu dump \\-t 4242 \\-D /tmp/ckpt \\-v4 \\-o dump.log
    criu restore \\-D /tmp/ckpt \\-d
Checkpoint a tree with established TCP connections and keep it running:
    criu dump \\-t 4242 \\-D /tmp/ckpt \\-\\-tcp\\-established \\-R
Point runc at this criu:
    runc \\-\\-criu /usr/sbin/criu checkpoint \\-\\-image\\-path /tmp/ckpt CONTAINER
.fi
";

const DIFFERENCES: &str = "\
Restore needs no restorer blob: tasks are rebuilt by injected system calls. Images are
CRIU's, byte for byte where CRIU's are defined. Commands and options that this criu cannot
honour yet (for example \\fBpre\\-dump\\fR, \\fBpage\\-server\\fR and \\fBlazy\\-pages\\fR) fail
with a message that names them instead of being ignored. Every command takes
\\fB\\-\\-help\\fR and lists only its own options.
";

/// The whole page.
pub fn criu_8() -> String {
    let mut out = String::new();
    out += ".TH CRIU 8 \"\" \"criu-rs\" \"System Administration\"\n";
    out += ".SH NAME\ncriu \\- checkpoint/restore in userspace\n";
    out += ".SH SYNOPSIS\n";
    for (cmd, _) in COMMANDS {
        out += &format!("\\fBcriu\\fR \\fB{}\\fR [\\fIoptions\\fR]\n.br\n", esc(cmd));
    }
    out += ".SH DESCRIPTION\n";
    out += DESCRIPTION;
    out += ".SH COMMANDS\n";
    for (cmd, what) in COMMANDS {
        out += &format!(".TP\n.B {}\n{}\n", esc(cmd), esc(what));
    }
    out += ".SH OPTIONS\n";
    out += "Boolean long options also take a \\fB\\-\\-no\\-\\fR prefix that turns them off.\n";
    for group in Group::ALL {
        out += &format!(".SS {}\n", group.title());
        for (spec, d) in super::options().filter(|(_, d)| d.group == group) {
            let mut head = match spec.short {
                Some(c) => format!("\\fB\\-{c}\\fR, \\fB\\-\\-{}\\fR", esc(spec.long)),
                None => format!("\\fB\\-\\-{}\\fR", esc(spec.long)),
            };
            if let Some(arg) = d.arg {
                head += &format!(" \\fI{}\\fR", esc(arg));
            }
            out += &format!(".TP\n{head}\n{}.\n", esc(d.help));
            if let Some(def) = d.default {
                out += &format!("Default: {}.\n", esc(def));
            }
            if !d.commands.is_empty() {
                out += &format!("Commands: {}.\n", esc(&d.commands.join(", ")));
            }
        }
    }
    out += ".SH ACTION SCRIPTS\n";
    out += ACTION_SCRIPTS;
    out += ".SH RPC\n";
    out += RPC;
    out += ".SH EXAMPLES\n";
    out += EXAMPLES;
    out += ".SH DIFFERENCES FROM CRIU\n";
    out += DIFFERENCES;
    out += ".SH SEE ALSO\n\\fBcrit\\fR(1), \\fBrunc\\fR(8), \\fBpodman\\fR(1)\n";
    out
}

/// crit(1): crit's subcommands and options (crit/src/args.rs parses them).
pub const CRIT_SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "decode [\\-i IN] [\\-o OUT] [\\-\\-pretty]",
        "convert an image from binary to JSON",
    ),
    (
        "encode [\\-i IN] [\\-o OUT]",
        "convert an image from JSON to binary",
    ),
    ("info IN", "show the image's magic and entry count"),
    (
        "x DIR ps|fds|mems|rss",
        "explore an images directory: tasks, files, memory, resident pages",
    ),
    (
        "show IN [\\-\\-nopl]",
        "convert an image to human-readable JSON; --nopl leaves page payloads out",
    ),
];

pub fn crit_1() -> String {
    let mut out = String::new();
    out += ".TH CRIT 1 \"\" \"criu-rs\" \"User Commands\"\n";
    out += ".SH NAME\ncrit \\- CRIU image tool\n";
    out +=
        ".SH SYNOPSIS\n\\fBcrit\\fR [\\fB\\-h\\fR] [\\fB\\-\\-version\\fR] \\fIcommand\\fR ...\n";
    out += ".SH DESCRIPTION\n";
    out +=
        "crit reads and writes criu's image files as JSON, with the same commands and output as \
CRIU's crit. Input and output default to stdin and stdout.\n";
    out += ".SH COMMANDS\n";
    for (cmd, what) in CRIT_SUBCOMMANDS {
        out += &format!(".TP\n\\fB{cmd}\\fR\n{}\n", esc(what));
    }
    out +=
        ".SH EXAMPLES\n.nf\ncrit decode \\-i pstree.img \\-\\-pretty\ncrit x /tmp/ckpt ps\n.fi\n";
    out += ".SH SEE ALSO\n\\fBcriu\\fR(8)\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_in_the_man_page_escaped() {
        let page = criu_8();
        for (spec, _) in crate::docs::options() {
            let name = format!("\\fB\\-\\-{}\\fR", esc(spec.long));
            assert!(page.contains(&name), "{name} is missing");
        }
        assert_eq!(esc(".x-y\\"), "\\&.x\\-y\\e");
    }
}
