//! Framing: magic checks, entry lengths, truncation, required fields; errors name the file
//! and the byte offset.

use criu_proto::images::{CoreEntry, PstreeEntry, TaskCoreEntry};
use criu_proto::json::{decode_image, DecodeOptions};
use criu_proto::{Error, ImageKind, ImageReader, ImageWriter, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
use prost::Message;

fn pstree(pid: u32) -> PstreeEntry {
    PstreeEntry {
        pid,
        ppid: 0,
        pgid: pid,
        sid: pid,
        threads: vec![pid, pid + 1],
    }
}

fn pstree_image(count: u32) -> Vec<u8> {
    let mut w = ImageWriter::new("pstree.img", &ImageKind::PSTREE, Vec::new()).unwrap();
    for pid in 1..=count {
        w.write(&pstree(pid)).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> Result<Vec<PstreeEntry>, Error> {
    ImageReader::new("pstree.img", &ImageKind::PSTREE, bytes)?.read_all::<PstreeEntry>()
}

#[test]
fn writes_head_magics_and_length_prefixed_entries() {
    let bytes = pstree_image(1);
    assert_eq!(&bytes[0..4], &IMG_COMMON_MAGIC.to_le_bytes());
    assert_eq!(&bytes[4..8], &0x5027_3030u32.to_le_bytes());
    let body = pstree(1).encode_to_vec();
    assert_eq!(&bytes[8..12], &(body.len() as u32).to_le_bytes());
    assert_eq!(&bytes[12..], &body[..]);
    assert_eq!(read_all(&bytes).unwrap(), vec![pstree(1)]);

    let inventory = ImageWriter::new("i", &ImageKind::INVENTORY, Vec::new())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(inventory, 0x5831_3116u32.to_le_bytes());
    let stats = ImageWriter::new("s", &ImageKind::STATS_DUMP, Vec::new())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(&stats[..4], &IMG_SERVICE_MAGIC.to_le_bytes());
    let pages = ImageWriter::new("p", &ImageKind::PAGES, Vec::new())
        .unwrap()
        .finish()
        .unwrap();
    assert!(pages.is_empty());
}

#[test]
fn files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ImageWriter::create(dir.path(), &ImageKind::CORE, Some(42)).unwrap();
    let core = CoreEntry {
        mtype: 1,
        tc: Some(TaskCoreEntry {
            comm: "sleep".into(),
            task_state: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    w.write(&core).unwrap();
    w.finish().unwrap();
    assert!(dir.path().join("core-42.img").exists());
    let mut r = ImageReader::open(dir.path(), &ImageKind::CORE, Some(42)).unwrap();
    assert_eq!(r.read::<CoreEntry>().unwrap(), Some(core));
    assert_eq!(r.read::<CoreEntry>().unwrap(), None);
    assert!(
        ImageReader::open_if_exists(dir.path(), &ImageKind::CORE, Some(7))
            .unwrap()
            .is_none()
    );
    let missing = ImageReader::open(dir.path(), &ImageKind::MM, Some(7))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("mm-7.img"), "{missing}");
    assert_eq!(
        ImageKind::GHOST_FILE.file_name(Some(255)),
        "ghost-file-ff.img"
    );
}

#[test]
fn garbage_magic_is_an_error_at_offset() {
    let mut bytes = pstree_image(1);
    bytes[4] ^= 0xff;
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("pstree.img") && err.contains("at byte 4") && err.contains("bad magic"),
        "{err}"
    );
    let err = read_all(&[]).unwrap_err().to_string();
    assert!(err.contains("empty file"), "{err}");
    let err = decode_image(
        "junk.img",
        b"\x01\x02\x03\x04\x05\x06\x07\x08",
        DecodeOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown magic 0x4030201"), "{err}");
}

#[test]
fn truncated_images_are_errors_not_panics() {
    let bytes = pstree_image(2);
    // Every cut except at entry boundaries must fail, and name the file.
    let first_end = 12 + pstree(1).encode_to_vec().len();
    for cut in 0..bytes.len() {
        let result = read_all(&bytes[..cut]);
        if cut == 8 || cut == first_end {
            assert!(result.is_ok(), "cut {cut}");
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.starts_with("pstree.img: "), "cut {cut}: {err}");
        }
        // The JSON decoder must not panic either.
        let _ = decode_image("pstree.img", &bytes[..cut], DecodeOptions::default());
    }
    let err = read_all(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("at byte {}", first_end + 4)) && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn oversized_length_is_rejected() {
    let mut bytes = pstree_image(0);
    bytes.extend_from_slice(&(65u32 << 20).to_le_bytes());
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("at byte 8") && err.contains("over the"),
        "{err}"
    );
    // Claims less than the limit but more than the file has.
    let mut bytes = pstree_image(0);
    bytes.extend_from_slice(&1000u32.to_le_bytes());
    bytes.extend_from_slice(&[0x08, 0x01]);
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("only 2 left"), "{err}");
}

#[test]
fn missing_required_field_is_an_error() {
    // pstree_entry with pid and ppid only (pgid and sid are required too).
    let body = [0x08, 0x05, 0x10, 0x01];
    let mut bytes = pstree_image(0);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("lacks required field pgid") && err.contains("at byte 8"),
        "{err}"
    );
    let json = decode_image("pstree.img", &bytes, DecodeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(json.contains("pgid"), "{json}");

    // Nested: a core entry whose tc lacks comm.
    let core = CoreEntry {
        mtype: 1,
        tc: Some(TaskCoreEntry::default()),
        ..Default::default()
    };
    let mut nested = core.encode_to_vec();
    // Drop the comm field (tag 6, empty string: bytes 0x32 0x00) from the nested tc.
    let pos = nested.windows(2).position(|w| w == [0x32, 0x00]).unwrap();
    nested.drain(pos..pos + 2);
    nested[3] -= 2; // tc's length byte
    let mut w = ImageWriter::new("core-1.img", &ImageKind::CORE, Vec::new()).unwrap();
    w.write_entry_bytes(&nested).unwrap();
    let image = w.finish().unwrap();
    let err = ImageReader::new("core-1.img", &ImageKind::CORE, image.as_slice())
        .unwrap()
        .read::<CoreEntry>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("tc.comm"), "{err}");
}

#[test]
fn garbage_entry_is_a_decode_error() {
    let mut bytes = pstree_image(0);
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
    let err = read_all(&bytes).unwrap_err().to_string();
    assert!(err.contains("pstree.img: at byte 8"), "{err}");
}

#[test]
fn every_kind_has_a_known_message_and_magic() {
    for kind in ImageKind::ALL {
        assert!(kind.magic_is_named(), "{}", kind.name);
        if !kind.message.is_empty() {
            criu_proto::message_descriptor(kind.message)
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name));
        }
    }
}
