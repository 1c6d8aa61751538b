//! Turning a solved stage into an image and writing it out: an OCI layout (directory or
//! tarball), a docker-archive, or the plain filesystem.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::copy;
use crate::image::layout::Artifact;
use crate::image::oci::{Descriptor, MEDIA_TYPE_CONFIG, now, rfc3339};
use crate::solve::{Solver, StageResult};

/// Options of the exported image.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// `--label`: added to the config, over the Dockerfile's.
    pub labels: BTreeMap<String, String>,
    pub source_date_epoch: Option<i64>,
    /// `--cache-to type=inline`: the cache records of the image's layers, put in its config.
    pub inline_cache: Option<crate::cache::transfer::CacheConfig>,
    /// The platform the config names, over its stage's (`--platform` given). BuildKit's rule:
    /// `os` and `architecture` are the target's; so is `variant` when the target names one or
    /// differs in `os` or `architecture`.
    pub platform: Option<crate::image::oci::Platform>,
}

/// Build the image documents of a result and store them.
pub fn assemble(
    solver: &Solver<'_>,
    result: &StageResult,
    opts: &ImageOptions,
) -> io::Result<Artifact> {
    let store = solver.snapshots().store();
    let blobs = solver.layers(result)?;
    let mut image = result.image.clone();
    image.rootfs.kind = "layers".into();
    image.rootfs.diff_ids = blobs.iter().map(|b| b.diff_id.clone()).collect();
    image.created = Some(opts.source_date_epoch.map_or_else(now, |e| rfc3339(e, 0)));
    for (k, v) in &opts.labels {
        image.config.labels.insert(k.clone(), v.clone());
    }
    if let Some(p) = &opts.platform {
        let same = image.os == p.os && image.architecture == p.architecture;
        if p.variant.is_some() || !same {
            image.variant = p.variant.clone();
        }
        image.os = p.os.clone();
        image.architecture = p.architecture.clone();
    }
    let config_bytes = match &opts.inline_cache {
        None => serde_json::to_vec(&image),
        Some(cache) => serde_json::to_value(&image).and_then(|mut v| {
            if let Some(map) = v.as_object_mut() {
                map.insert(
                    crate::cache::registry::INLINE_KEY.into(),
                    crate::cache::registry::inline_value(cache),
                );
            }
            serde_json::to_vec(&v)
        }),
    }
    .map_err(io::Error::other)?;
    let layers = blobs
        .iter()
        .map(|b| Descriptor::new(&b.media_type, b.digest.clone(), b.size))
        .collect();
    Artifact::put(
        store,
        MEDIA_TYPE_CONFIG,
        config_bytes,
        layers,
        None,
        image.platform(),
    )
}

/// The setuid and setgid files and the device nodes of a filesystem, by path (at most 20, then
/// a count): a local output copies them as they are, and whoever can reach the directory can
/// run them or open the devices, so the build says so.
pub fn privileged_files(view: &crate::snapshot::view::View) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut more = 0;
    let _ = view.walk(Path::new(""), &mut |p, f| {
        let ft = f.meta.file_type();
        let why = if ft.is_char_device() || ft.is_block_device() {
            "device"
        } else if ft.is_file() && f.meta.mode() & 0o4000 != 0 {
            "setuid"
        } else if ft.is_file() && f.meta.mode() & 0o2000 != 0 {
            "setgid"
        } else {
            return Ok(());
        };
        if out.len() < 20 {
            out.push(format!("/{} ({why})", p.display()));
        } else {
            more += 1;
        }
        Ok(())
    });
    if more > 0 {
        out.push(format!("and {more} more"));
    }
    out
}

/// Write the final filesystem of a result into a directory (`--output type=local`).
pub fn write_local(
    solver: &Solver<'_>,
    result: &StageResult,
    dest: &Path,
) -> Result<(), copy::CopyError> {
    fs::create_dir_all(dest)?;
    solver
        .materialise(&result.chain)
        .map_err(|e| io::Error::other(e.to_string()))?;
    copy::copy_tree(copy::Source::View(&result.view(solver)), "/", dest)
}
