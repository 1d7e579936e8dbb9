//! `criu dedup` and `--auto-dedup`: pages a dump holds itself are punched out of its parent
//! dumps (see criu_memory::dedup); after an `--auto-dedup` restore, the pages it read are
//! punched out of the images it read them from.

use std::path::Path;

/// `criu dedup -D DIR`.
pub fn run(images: &Path) -> i32 {
    match dedup(images) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

/// Deduplicates `images` against its chain of parents.
pub fn dedup(images: &Path) -> Result<(), String> {
    let done = criu_memory::dedup::dedup(images).map_err(|e| format!("dedup: {e}"))?;
    tracing::info!(
        "Deduplicated: {} pagemap(s), {} bytes punched out of older dumps",
        done.pagemaps,
        done.bytes
    );
    Ok(())
}

/// After an `--auto-dedup` restore: the pages every task read, out of their images.
pub fn after_restore(images: &Path) -> Result<(), String> {
    let bytes =
        criu_memory::dedup::punch_restored(images).map_err(|e| format!("auto-dedup: {e}"))?;
    tracing::info!("auto-dedup: {bytes} bytes of restored pages punched out of the images");
    Ok(())
}
