//! The mount options of dump and restore: `--external mnt[A]:B` and `-M/--ext-mount-map A:B`
//! (dump: A is a mount point of the tree, B its key; restore: A is a key, B a path of criu's),
//! autodetected external mounts (`--ext-mount-map auto`, `--external mnt[]`, `mnt[]:s`,
//! `mnt[]:m`, `--enable-external-sharing`, `--enable-external-masters`), and restore's
//! `-r/--root`.

use crate::cli::Options;

pub fn mount_options(o: &Options) -> criu_mounts::MountOptions {
    let from_external = o.external.iter().filter_map(|e| {
        let (a, b) = e.strip_prefix("mnt[")?.split_once("]:")?;
        (!a.is_empty()).then(|| (a.to_string(), b.to_string()))
    });
    // `mnt[]` autodetects external mounts; `mnt[]:s` and `mnt[]:m` allow shared and slave ones.
    let auto = |tail: &str| o.external.iter().any(|e| e == &format!("mnt[]{tail}"));
    criu_mounts::MountOptions {
        external: from_external
            .chain(o.ext_mount_map.iter().cloned())
            .collect(),
        root: o.root.as_ref().map(std::path::PathBuf::from),
        auto_external: o.ext_mount_auto || auto("") || auto(":s") || auto(":m"),
        external_sharing: o.enable_external_sharing || auto(":s"),
        external_masters: o.enable_external_masters || auto(":m"),
        devices: o
            .external
            .iter()
            .filter_map(|e| {
                let (a, b) = e.strip_prefix("dev[")?.split_once("]:")?;
                Some((a.to_string(), b.to_string()))
            })
            .collect(),
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
