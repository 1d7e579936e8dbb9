//! JSON round trips: every image kind decodes to crit's JSON and encodes back to the same
//! bytes, through the JSON text too; typed prost messages agree with the descriptors.

mod common;

use common::{framed_kinds, sample_image, sample_plain_ghost};
use criu_proto::json::{decode_image, encode_image, image_info, to_python_json, DecodeOptions};
use criu_proto::{images, ImageKind, ImageReader, ImageWriter};
use prost::Message;

fn round_trip(name: &str, bytes: &[u8]) {
    for pretty in [false, true] {
        let json = decode_image(
            name,
            bytes,
            DecodeOptions {
                pretty,
                no_payload: false,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: decode: {e}"));
        let again = encode_image(name, &json).unwrap_or_else(|e| panic!("{name}: encode: {e}"));
        assert_eq!(
            again, bytes,
            "{name}: decode then encode (pretty={pretty}) changed the bytes"
        );
        // Through the text, as `crit decode | crit encode` does.
        let text = to_python_json(&json, pretty.then_some(4));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            encode_image(name, &parsed).unwrap(),
            bytes,
            "{name}: text round trip (pretty={pretty})"
        );
    }
}

#[test]
fn every_kind_round_trips_byte_identical() {
    let kinds = framed_kinds();
    assert!(kinds.len() > 60, "only {} kinds", kinds.len());
    for kind in kinds {
        round_trip(kind.name, &sample_image(kind));
    }
    round_trip("ghost without chunks", &sample_plain_ghost());
}

#[test]
fn json_shape_is_crits() {
    let bytes = sample_image(&ImageKind::MM);
    let pretty = decode_image(
        "mm",
        &bytes,
        DecodeOptions {
            pretty: true,
            no_payload: false,
        },
    )
    .unwrap();
    assert_eq!(pretty["magic"], "MM");
    let vma = &pretty["entries"][0]["vmas"][0];
    assert!(vma["start"].as_str().unwrap().starts_with("0x"), "{vma}");
    assert_eq!(vma["prot"], "PROT_READ | PROT_WRITE | 0x100020");
    assert_eq!(
        vma["flags"],
        "MAP_SHARED | MAP_PRIVATE | MAP_ANON | 0x100000"
    );
    let plain = decode_image("mm", &bytes, DecodeOptions::default()).unwrap();
    assert!(plain["entries"][0]["vmas"][0]["start"].is_u64());

    let inet = decode_image(
        "inetsk",
        &sample_image(&ImageKind::INETSK),
        DecodeOptions {
            pretty: true,
            no_payload: false,
        },
    )
    .unwrap();
    let sk = &inet["entries"][0];
    assert_eq!(sk["family"], "INET6");
    assert_eq!(sk["proto"], "TCP");
    assert_eq!(sk["src_addr"], serde_json::json!(["10.0.1.1"]));
    assert_eq!(sk["dst_addr"], serde_json::json!(["fe80::1:1"]));

    let pipes = decode_image(
        "pipes-data",
        &sample_image(&ImageKind::PIPES_DATA),
        DecodeOptions::default(),
    )
    .unwrap();
    assert!(pipes["entries"][0]["extra"]
        .as_str()
        .unwrap()
        .ends_with('\n'));
    let nopl = decode_image(
        "pipes-data",
        &sample_image(&ImageKind::PIPES_DATA),
        DecodeOptions {
            pretty: true,
            no_payload: true,
        },
    )
    .unwrap();
    assert_eq!(nopl["entries"][0]["extra"], "... <51B>");

    let pagemap = image_info("pagemap", &sample_image(&ImageKind::PAGEMAP)).unwrap();
    assert_eq!(pagemap, serde_json::json!({"magic": "PAGEMAP", "count": 2}));
}

#[test]
fn typed_messages_match_descriptors() {
    // Entries written from descriptors read back as prost types and re-encode identically.
    fn check<M: Message + Default + prost::Name>(kind: &ImageKind) {
        let bytes = sample_image(kind);
        let mut reader = ImageReader::new(kind.name, kind, bytes.as_slice()).unwrap();
        let mut writer = ImageWriter::new(kind.name, kind, Vec::new()).unwrap();
        let mut count = 0;
        while let Some(entry) = reader.read::<M>().unwrap() {
            writer.write(&entry).unwrap();
            count += 1;
        }
        assert_eq!(count, 2);
        assert_eq!(writer.finish().unwrap(), bytes, "{}", kind.name);
    }
    check::<images::InventoryEntry>(&ImageKind::INVENTORY);
    check::<images::CoreEntry>(&ImageKind::CORE);
    check::<images::PstreeEntry>(&ImageKind::PSTREE);
    check::<images::MmEntry>(&ImageKind::MM);
    check::<images::CpuinfoEntry>(&ImageKind::CPUINFO);
    check::<images::StatsEntry>(&ImageKind::STATS_DUMP);
    check::<images::FileEntry>(&ImageKind::FILES);
    check::<images::NetDeviceEntry>(&ImageKind::NETDEV);
    check::<images::CgroupEntry>(&ImageKind::CGROUP);
    check::<images::MntEntry>(&ImageKind::MNTS);
}

#[test]
fn empty_submessage_and_false_are_kept() {
    // An empty plugin list is told from none only by the presence of the wrapper message.
    let inv = images::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(false),
        plugins_entry: Some(images::PluginsEntry { plugins: vec![] }),
        ..Default::default()
    };
    let mut w = ImageWriter::new("inventory.img", &ImageKind::INVENTORY, Vec::new()).unwrap();
    w.write(&inv).unwrap();
    let bytes = w.finish().unwrap();
    let json = decode_image("inventory.img", &bytes, DecodeOptions::default()).unwrap();
    assert_eq!(
        to_python_json(&json, None),
        r#"{"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": false, "plugins_entry": {}}]}"#
    );
    assert_eq!(encode_image("inventory.img", &json).unwrap(), bytes);
}
