//! Progress on a terminal. When stderr is a TTY and the log goes to a file, dump, pre-dump,
//! restore and page-server draw one line: phase, tasks, bytes done of the total known so far,
//! rate and time left. Never on a pipe, never for swrk or service, never in the log. The
//! domain crates only emit `tracing` events with target [`TARGET`] and the fields `phase`,
//! `tasks`, `total` (bytes to add to the total) and `done` (bytes finished); this layer
//! draws them.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub const TARGET: &str = "progress";

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Whether `command` shows progress: a terminal on stderr and a log that goes elsewhere.
pub fn wanted(command: &str, log_to_file: bool) -> bool {
    matches!(command, "dump" | "pre-dump" | "restore" | "page-server")
        && log_to_file
        && std::io::stderr().is_terminal()
}

/// Starts drawing for `command`.
pub fn start(command: &str) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix} {msg} [{bar:24}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(command.to_string());
    bar.set_message("starting");
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
}

/// Ends the line with what was done (the last phase stays on screen).
pub fn finish(ok: bool) {
    if let Some(bar) = BAR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let msg = format!("{}: {}", bar.message(), if ok { "done" } else { "failed" });
        bar.finish_with_message(msg);
    }
}

/// Runs `f` (a write to stderr) with the bar lifted, so lines do not mix.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

#[derive(Default)]
struct Fields {
    phase: Option<String>,
    tasks: Option<u64>,
    total: u64,
    done: u64,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "phase" {
            self.phase = Some(value.to_string());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "tasks" => self.tasks = Some(value),
            "total" => self.total = value,
            "done" => self.done = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

pub struct ProgressLayer;

impl<S: Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let guard = BAR.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bar) = guard.as_ref() else { return };
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(phase) = f.phase {
            let msg = match f.tasks {
                Some(n) => format!("{phase}, {n} task(s)"),
                None => phase,
            };
            bar.set_message(msg);
        }
        if f.total > 0 {
            bar.inc_length(f.total);
        }
        if f.done > 0 {
            bar.inc(f.done);
        }
    }
}
