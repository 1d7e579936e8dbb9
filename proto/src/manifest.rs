//! The images' checksums, beside CRIU's images: written last by a dump, checked by a restore
//! before any task is touched, so that a damaged file is named instead of restored. Lines as
//! `xxh128sum` writes them (`HASH  NAME`, XXH3-128), so `xxh128sum -c images.xxh128` checks a
//! copy of the images too. Images without one (CRIU's) are accepted.

use std::collections::BTreeMap;
use std::path::Path;

/// The manifest's file name in the images dir.
pub const NAME: &str = "images.xxh128";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{NAME}: line {line}: not `HASH  NAME`")]
    Malformed { line: usize },
    #[error("{name} is damaged: its checksum is {found}, the dump wrote {want}")]
    Mismatch {
        name: String,
        want: String,
        found: String,
    },
    #[error("{name} is listed in {NAME} but missing")]
    Missing { name: String },
}

/// What a restore found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// No manifest: images made by CRIU, or by an older dump.
    Absent,
    /// Every listed image matched; how many.
    Checked(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The XXH3-128 of a file, as `xxh128sum` prints it. Read through a mapping: no copy out of
/// the page cache (a page image of a GiB is hashed at memory speed).
fn hash_file(path: &Path) -> Result<String, ManifestError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let map = criu_sys::mapping::FileMapping::new(&file).map_err(io(path))?;
    Ok(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(map.bytes())))
}

/// Hashes `names` in `dir` on every core (page images are large).
fn hash_all(dir: &Path, names: &[String]) -> Result<Vec<String>, ManifestError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<std::sync::Mutex<Option<Result<String, ManifestError>>>> =
        names.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(names.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let r = hash_file(&dir.join(name));
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .zip(names)
        .map(|(m, name)| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(ManifestError::Missing { name: name.clone() }))
        })
        .collect()
}

/// Writes the manifest of every `*.img` file in `dir`, taking the hashes in `known` (images
/// hashed as they were written) as they are; returns how many it lists.
pub fn write(dir: &Path, known: &BTreeMap<String, u128>) -> Result<usize, ManifestError> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".img") && e.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !known.contains_key(*n))
        .cloned()
        .collect();
    let mut hashes: BTreeMap<&String, String> =
        unknown.iter().zip(hash_all(dir, &unknown)?).collect();
    for (n, h) in known {
        hashes.insert(n, format!("{h:032x}"));
    }
    let text: String = names
        .iter()
        .filter_map(|n| hashes.get(n).map(|h| format!("{h}  {n}\n")))
        .collect();
    let path = dir.join(NAME);
    let mut f = crate::create_image_file(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(&path))?;
    Ok(names.len())
}

/// Brings the lines of `names` up to date after those images changed on purpose (dedup
/// punched pages out of them); a dump without a manifest (CRIU's) stays without one.
pub fn update(dir: &Path, names: &[String]) -> Result<(), ManifestError> {
    let path = dir.join(NAME);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io(&path))?,
    };
    let fresh: BTreeMap<&String, String> = names.iter().zip(hash_all(dir, names)?).collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line
            .split_once("  ")
            .and_then(|(_, n)| fresh.get(&n.to_string()).map(|h| (n, h)))
        {
            Some((name, h)) => out.push_str(&format!("{h}  {name}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let mut f = crate::create_image_file(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut f, out.as_bytes()).map_err(io(&path))
}

/// Checks every image the manifest of `dir` lists.
pub fn verify(dir: &Path) -> Result<Verified, ManifestError> {
    let path = dir.join(NAME);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verified::Absent),
        other => other.map_err(io(&path))?,
    };
    let mut want = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let (hash, name) = line
            .split_once("  ")
            .filter(|(h, n)| h.len() == 32 && !n.is_empty() && !n.contains('/'))
            .ok_or(ManifestError::Malformed { line: i + 1 })?;
        want.insert(name.to_string(), hash.to_string());
    }
    let names: Vec<String> = want.keys().cloned().collect();
    for name in &names {
        if !dir.join(name).exists() {
            return Err(ManifestError::Missing { name: name.clone() });
        }
    }
    let found = hash_all(dir, &names)?;
    for (name, found) in names.iter().zip(found) {
        if want[name] != found {
            return Err(ManifestError::Mismatch {
                name: name.clone(),
                want: want[name].clone(),
                found,
            });
        }
    }
    Ok(Verified::Checked(names.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_printed_as_xxh128sum_prints_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.img");
        std::fs::write(&p, b"hello").unwrap();
        // `xxh128sum h.img` (Debian's xxhash 0.8.1).
        assert_eq!(hash_file(&p).unwrap(), "b5e9c1ad071b3e7fc779cfaa5e523818");
    }

    #[test]
    fn a_flipped_byte_and_a_missing_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(verify(d).unwrap(), Verified::Absent);
        std::fs::write(d.join("core-1.img"), b"core").unwrap();
        std::fs::write(d.join("pages-1.img"), vec![7u8; 3 << 20]).unwrap();
        std::fs::write(d.join("dump.log"), b"not an image").unwrap();
        assert_eq!(write(d, &BTreeMap::new()).unwrap(), 2);
        assert_eq!(verify(d).unwrap(), Verified::Checked(2));
        // The log may change freely.
        std::fs::write(d.join("dump.log"), b"changed").unwrap();
        assert_eq!(verify(d).unwrap(), Verified::Checked(2));
        let mut pages = std::fs::read(d.join("pages-1.img")).unwrap();
        pages[2 << 20] ^= 1;
        std::fs::write(d.join("pages-1.img"), &pages).unwrap();
        let e = verify(d).unwrap_err().to_string();
        assert!(e.starts_with("pages-1.img is damaged"), "{e}");
        std::fs::remove_file(d.join("core-1.img")).unwrap();
        assert!(matches!(verify(d), Err(ManifestError::Missing { .. })));
        std::fs::write(d.join(NAME), "zz  ../x\n").unwrap();
        assert!(matches!(
            verify(d),
            Err(ManifestError::Malformed { line: 1 })
        ));
    }
}
