//! The mount options of dump and restore: `--external mnt[A]:B` and `-M/--ext-mount-map A:B`
//! (dump: A is a mount point of the tree, B its key; restore: A is a key, B a path of criu's),
//! `--ext-mount-map auto`, and restore's `-r/--root`.

use crate::cli::Options;

pub fn mount_options(o: &Options) -> criu_mounts::MountOptions {
    let from_external = o.external.iter().filter_map(|e| {
        let (a, b) = e.strip_prefix("mnt[")?.split_once("]:")?;
        Some((a.to_string(), b.to_string()))
    });
    criu_mounts::MountOptions {
        external: from_external
            .chain(o.ext_mount_map.iter().cloned())
            .collect(),
        root: o.root.as_ref().map(std::path::PathBuf::from),
        ext_mount_map_auto: o.ext_mount_auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_mounts_come_from_both_options() {
        let o = Options {
            external: vec!["mnt[/dev]:ZDTM_DEV".into(), "unix[5]".into()],
            ext_mount_map: vec![("/data".into(), "DATA".into())],
            root: Some("/tmp/root".into()),
            ..Default::default()
        };
        let m = mount_options(&o);
        assert_eq!(
            m.external,
            [
                ("/dev".into(), "ZDTM_DEV".into()),
                ("/data".into(), "DATA".into())
            ]
        );
        assert_eq!(m.root, Some("/tmp/root".into()));
    }
}
