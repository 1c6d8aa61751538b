//! Registry documents (manifests, indexes, manifest lists, image configs) as a registry or an
//! OCI layout may serve them: recognising, parsing and platform selection never panic.

#![no_main]

use kiln_worker::image::oci::{Image, Index, Manifest, Platform};
use kiln_worker::registry::pull::{is_index, select};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = is_index(data);
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        for p in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64"] {
            if let Some(platform) = Platform::parse(p) {
                let _ = select(&index, &platform);
            }
        }
        let _ = serde_json::to_vec(&index);
    }
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(data) {
        let _ = serde_json::to_vec(&manifest);
    }
    if let Ok(image) = serde_json::from_slice::<Image>(data) {
        let _ = image.platform().to_string();
        let _ = serde_json::to_vec(&image);
    }
});
