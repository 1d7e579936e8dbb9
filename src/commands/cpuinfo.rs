//! `criu cpuinfo dump` and `criu cpuinfo check`.

use std::path::Path;

use crate::cli::values::cpu_cap;
use crate::cpu::{detect, image, validate};

/// Writes this CPU's cpuinfo image into `images`.
pub fn dump(images: &Path) -> i32 {
    let result = detect::detect()
        .map_err(|e| e.to_string())
        .and_then(|c| image::write(images, &c).map_err(|e| e.to_string()));
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("cpuinfo dump: {e}");
            1
        }
    }
}

/// Compares the image in `images` with this CPU. With `--cpu-cap=none` (or no check at all)
/// everything is compared, as CRIU does.
pub fn check(images: &Path, caps: u32) -> i32 {
    let caps = if caps == cpu_cap::NONE {
        cpu_cap::ALL
    } else {
        caps
    };
    let result = detect::detect()
        .map_err(|e| e.to_string())
        .and_then(|host| {
            let img = image::read(images, &host).map_err(|e| e.to_string())?;
            validate::validate(&img, &host, caps).map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("cpuinfo check: {e}");
            1
        }
    }
}
