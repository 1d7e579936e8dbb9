//! Logging with CRIU's levels and layout: `-v0` messages only, 1 errors, 2 warnings (default),
//! 3 information with `(SS.micros)` timestamps, 4 debug. Output goes to the log file when one is
//! given (errors are copied to stderr so a failure is seen), otherwise to stderr.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// CRIU's numeric level of a tracing level.
fn criu_level(level: &Level) -> i64 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Where log lines go: set by `init`, again for each RPC request (one process may serve a
/// VERSION request and then a dump, each with its own log).
struct Target {
    level: i64,
    start: Instant,
    file: Option<File>,
    /// The last error, which an RPC answer carries as `cr_errmsg`.
    last_error: Option<String>,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

struct CriuLayer;

#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for CriuLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() == crate::progress::TARGET {
            return;
        }
        let level = criu_level(meta.level());
        let mut guard = TARGET.lock().unwrap_or_else(|e| e.into_inner());
        let Some(target) = guard.as_mut() else { return };
        if level > target.level {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let mut line = String::new();
        if target.level >= 3 {
            let t = target.start.elapsed();
            let _ = write!(line, "({:02}.{:06}) ", t.as_secs(), t.subsec_micros());
        }
        match level {
            1 => line.push_str("Error: "),
            2 => line.push_str("Warn: "),
            _ => {}
        }
        line.push_str(&visitor.text);
        line.push('\n');
        if level == 1 {
            target.last_error = Some(visitor.text.clone());
        }
        match &mut target.file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
                if level == 1 {
                    let _ =
                        crate::progress::suspend(|| std::io::stderr().write_all(line.as_bytes()));
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

/// Opens (creating and truncating) the log file CRIU would.
pub fn open_log_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Sends the log to `file` (stderr when `None`) at `level`, timestamps counting from now.
/// The first call installs the logger; later ones (an RPC request) only retarget it.
pub fn init(level: i64, file: Option<File>) {
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Some(Target {
        level,
        start: Instant::now(),
        file,
        last_error: None,
    });
    let _ = tracing_subscriber::registry()
        .with(CriuLayer)
        .with(crate::progress::ProgressLayer)
        .try_init();
}

/// The last error logged since `init`.
pub fn last_error() -> Option<String> {
    TARGET
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|t| t.last_error.clone())
}

/// CRIU's `pr_msg`: user-facing output on stdout, shown at every level.
#[macro_export]
macro_rules! msg {
    ($($arg:tt)*) => {{
        println!($($arg)*);
    }};
}
