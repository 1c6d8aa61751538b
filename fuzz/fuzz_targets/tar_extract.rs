//! Unpack arbitrary bytes as a (possibly compressed) tarball into a fresh root, as a layer and
//! as an `ADD` archive: nothing may panic, and nothing outside the root may appear or change.

#![no_main]

use std::path::Path;

use kiln_worker::snapshot::extract::{UnpackOptions, unpack};
use libfuzzer_sys::fuzz_target;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let sentinel = base.path().join("sentinel");
    std::fs::write(&sentinel, b"outside").unwrap();
    let before = names(base.path());
    let layer = UnpackOptions {
        layer: true,
        overlay_xattr_prefix: "user",
        ignore_chown_errors: true,
        ..UnpackOptions::default()
    };
    let add = UnpackOptions {
        ignore_chown_errors: true,
        limits: Some(kiln_worker::fetch::Limits {
            max_bytes: 64 << 20,
            max_ratio: 1000,
            read_timeout: std::time::Duration::from_secs(1),
        }),
        ..UnpackOptions::default()
    };
    for opts in [layer, add] {
        let _ = unpack(data, &root, &opts);
        assert_eq!(names(base.path()), before, "something was created beside the root");
        assert_eq!(std::fs::read(&sentinel).unwrap(), b"outside");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
    }
});
