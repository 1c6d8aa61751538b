//! Base images: `FROM <image>`, `COPY --from=<image>` and `RUN --mount from=<image>`.
//!
//! An image reference is first looked up among the named build contexts, as written and then
//! normalised (`busybox` matches `docker.io/library/busybox:latest`), as BuildKit does. An OCI
//! layout's layers are unpacked once into snapshots named by their chain id, in parallel, with
//! every blob checked against its digest and every layer against its diff id; the compressed
//! blob is kept so that the exported image carries the base layers unchanged.
//!
//! Any other reference is pulled from its registry (see `registry::pull`); the layers it
//! downloads go through the same unpacking, and are shared with every later build through the
//! store, since snapshots are named by chain id and blobs by digest.
//!
//! When the build imports a cache (`--cache-from`), the steps on a base often all hit, and
//! then nothing reads its filesystem: its missing layers are then only registered, and
//! downloaded and unpacked when something needs them (as imported cache layers are; a push to
//! the same registry mounts them instead).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_crds::reference::Reference;

use super::stage::ImageState;
use super::{BaseError, BuildError, NamedContext, Solver, key};
use crate::digest::{Digest, HashingReader};
use crate::image::layout::Layout;
use crate::image::oci::{Descriptor, Image, Manifest, Platform};
use crate::progress::Event;
use crate::registry::pull::Puller;
use crate::snapshot::compress::Compression;
use crate::snapshot::extract::{self, UnpackOptions};
use crate::snapshot::layer::{LayerBlob, SnapshotMeta, chain_id};

/// Where a layer's blob is read from: its path, and whether it was already verified.
type BlobSource<'a> = dyn Fn(&Descriptor) -> Result<(PathBuf, bool), BaseError> + Sync + 'a;

/// One layer to unpack: its descriptor, diff id, snapshot id and parent snapshot.
struct Layer<'a> {
    desc: &'a Descriptor,
    diff_id: &'a Digest,
    chain: &'a Digest,
    parent: Option<String>,
}

/// The chain ids of an image's layers, bottom first.
fn chain_ids(origin: &str, manifest: &Manifest, image: &Image) -> Result<Vec<Digest>, BaseError> {
    let diff_ids = &image.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(BaseError::Invalid(format!(
            "image {origin} has {} layers but {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        out.push(chain_id(out.last(), d));
    }
    Ok(out)
}

/// The OCI media type of a layer blob as Kiln's images carry it (Docker's gzip type becomes
/// OCI's).
fn layer_media_type(media_type: &str) -> String {
    match media_type {
        m if m.ends_with("+zstd") => Compression::Zstd.media_type(),
        m if m.ends_with("gzip") => Compression::Gzip.media_type(),
        _ => Compression::Uncompressed.media_type(),
    }
    .to_string()
}

/// A registry repository as the source of lazily pulled base layers.
struct PullSource(Puller);

impl crate::cache::transfer::BlobSource for PullSource {
    fn describe(&self) -> String {
        self.0.reference().to_string()
    }
    fn fetch(
        &self,
        blob: &LayerBlob,
        _store: &crate::store::Store,
    ) -> Result<(), crate::cache::transfer::BlobError> {
        let desc = Descriptor::new(&blob.media_type, blob.digest.clone(), blob.size);
        self.0
            .layer(&desc)
            .map_err(|source| crate::cache::transfer::BlobError::Registry {
                what: format!("layer {} of {}", blob.digest, self.describe()),
                source,
            })
    }
}

/// Where a base image came from, for provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The reference as written (`busybox`, `reg:5000/app:1`, a named context's name).
    pub reference: String,
    /// What it resolved to: the index's digest when it names one, else the manifest's.
    pub digest: Digest,
    /// From a local OCI layout (`--build-context NAME=oci-layout://...`), not a registry.
    pub local: bool,
}

/// A base image, unpacked, and where it came from.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Where it came from; `None` for a local directory.
    pub source: Option<ImageSource>,
    pub state: ImageState,
}

impl std::ops::Deref for BaseImage {
    type Target = ImageState;
    fn deref(&self) -> &ImageState {
        &self.state
    }
}

impl Solver<'_> {
    /// The images this solver used (its platform's build), each with the platform it was
    /// resolved for and where it came from: the base images a provenance names.
    pub fn images_used(&self) -> Vec<(Platform, ImageSource)> {
        let used = super::shared::lock(&self.used_images).clone();
        let images = super::shared::lock(&self.shared.images);
        used.iter()
            .filter_map(|key| {
                let image = images.get(key)?.get()?.as_ref().ok()?;
                let platform = Platform::parse(&key.1)?;
                Some((platform, image.source.clone()?))
            })
            .collect()
    }

    /// Find the named context for a reference, as written or normalised.
    pub(super) fn named(&self, reference: &str) -> Option<&NamedContext> {
        let named = &self.opts.named_contexts;
        if let Some(c) = named.get(reference) {
            return Some(c);
        }
        let wanted = Reference::parse(reference).ok()?;
        named.iter().find_map(|(name, c)| {
            let r = Reference::parse(name).ok()?;
            (r.name() == wanted.name()
                && r.tag_or_latest() == wanted.tag_or_latest()
                && r.digest == wanted.digest)
                .then_some(c)
        })
    }

    /// Resolve and unpack an image for a platform, once per build: a second stage (of any
    /// platform's solver) asking for the same image waits for the first instead of unpacking
    /// it again.
    pub(super) fn image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Arc<BaseImage>, BuildError> {
        let key = (reference.to_string(), platform.to_string());
        {
            let mut used = super::shared::lock(&self.used_images);
            if !used.contains(&key) {
                used.push(key.clone());
            }
        }
        let cell = super::shared::lock(&self.shared.images)
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_init(|| {
            let vertex = self.next_vertex();
            let internal = if self.shared.multi_platform {
                format!("[{platform} internal]")
            } else {
                "[internal]".to_string()
            };
            self.event(Event::Start {
                id: vertex,
                name: format!("{internal} load image {reference}"),
            });
            let started = Instant::now();
            let named = |source: BaseError| BaseError::NamedContext {
                name: reference.to_string(),
                source: Box::new(source),
            };
            let result = match self.named(reference).cloned() {
                Some(NamedContext::OciLayout {
                    dir,
                    reference: inner,
                }) => self
                    .import_layout(reference, &dir, inner.as_deref(), platform)
                    .map_err(named),
                Some(NamedContext::Dir(dir)) => self.import_dir(&dir, platform).map_err(named),
                None => self.pull(reference, platform),
            };
            match &result {
                Ok(_) => self.event(Event::Done {
                    id: vertex,
                    seconds: started.elapsed().as_secs_f64(),
                }),
                Err(e) => self.event(Event::Error {
                    id: vertex,
                    message: e.to_string(),
                }),
            }
            result.map(Arc::new).map_err(Arc::new)
        })
        .clone()
        .map_err(BuildError::Base)
    }

    fn import_layout(
        &self,
        reference: &str,
        dir: &Path,
        wanted: Option<&str>,
        platform: &Platform,
    ) -> Result<BaseImage, BaseError> {
        let layout = Layout::open(dir).map_err(|e| BaseError::Unreadable(e.to_string()))?;
        let resolved = layout
            .resolve(wanted, platform)
            .map_err(|e| BaseError::Unreadable(e.to_string()))?;
        let origin = dir.display().to_string();
        let mut image = self.unpack_image(
            &origin,
            &resolved.manifest,
            resolved.image,
            &resolved.config_digest,
            &|desc| Ok((layout.blob_path(&desc.digest), false)),
        )?;
        image.source = Some(ImageSource {
            reference: reference.to_string(),
            digest: resolved.manifest_digest,
            local: true,
        });
        Ok(image)
    }

    /// Pull an image from its registry: the manifest for the build's platform, then each
    /// missing layer, downloaded into the store (verified while it streams) and unpacked, the
    /// layers in parallel.
    fn pull(&self, reference: &str, platform: &Platform) -> Result<BaseImage, BaseError> {
        let store = self.snapshots.store();
        let puller = Puller::new(&self.opts.registry, reference, store)?;
        let resolved = puller.resolve(platform)?;
        let source = ImageSource {
            reference: reference.to_string(),
            digest: resolved.digest.clone(),
            local: false,
        };
        let mut image = if !self.opts.cache_from.is_empty() {
            self.lazy_image(reference, puller, resolved)?
        } else {
            self.unpack_image(
                reference,
                &resolved.manifest,
                resolved.image,
                &resolved.config_digest,
                &|desc| {
                    puller.layer(desc)?;
                    Ok((store.blob_path(&desc.digest), true))
                },
            )?
        };
        image.source = Some(source);
        Ok(image)
    }

    /// A pulled image whose missing layers are fetched when needed.
    fn lazy_image(
        &self,
        origin: &str,
        puller: Puller,
        resolved: crate::registry::pull::Resolved,
    ) -> Result<BaseImage, BaseError> {
        let chain_ids = chain_ids(origin, &resolved.manifest, &resolved.image)?;
        let diff_ids = &resolved.image.rootfs.diff_ids;
        // A push to another repository of this registry mounts the layers from this one.
        let sources = crate::registry::sources::Sources::new(self.snapshots.store());
        for desc in &resolved.manifest.layers {
            let _ = sources.add(&desc.digest, &puller.reference().name());
        }
        let source: Arc<dyn crate::cache::transfer::BlobSource> = Arc::new(PullSource(puller));
        for (i, id) in chain_ids.iter().enumerate() {
            if self.snapshots.get(id.hex()).is_some() {
                continue;
            }
            let desc = &resolved.manifest.layers[i];
            let blob = LayerBlob {
                diff_id: diff_ids[i].clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                media_type: layer_media_type(&desc.media_type),
            };
            self.lazy_layer(id.hex(), blob, source.clone());
        }
        let layers: Vec<String> = chain_ids.iter().map(|c| c.hex().to_string()).collect();
        let chain = layers
            .iter()
            .rev()
            .filter(|id| !self.is_empty(id))
            .cloned()
            .collect();
        Ok(BaseImage {
            source: None,
            state: ImageState {
                key: key::image(&resolved.config_digest),
                chain,
                layers,
                image: resolved.image,
            },
        })
    }

    /// Unpack the layers of an image that are not snapshots yet, in parallel, each read from
    /// the path `blob` gives for it (which may download it first), with whether that file was
    /// already checked against its digest (a blob in the store was).
    fn unpack_image(
        &self,
        origin: &str,
        manifest: &Manifest,
        image: Image,
        config_digest: &Digest,
        blob: &BlobSource<'_>,
    ) -> Result<BaseImage, BaseError> {
        let diff_ids = &image.rootfs.diff_ids;
        let chain_ids = chain_ids(origin, manifest, &image)?;
        // Unpack the missing layers in parallel: each goes to its own directory.
        let missing: Vec<usize> = (0..chain_ids.len())
            .filter(|&i| self.snapshots.get(chain_ids[i].hex()).is_none())
            .collect();
        let errors: Vec<BaseError> = std::thread::scope(|scope| {
            let handles: Vec<_> = missing
                .iter()
                .map(|&i| {
                    let (desc, diff_id, chain) = (&manifest.layers[i], &diff_ids[i], &chain_ids[i]);
                    let parent = (i > 0).then(|| chain_ids[i - 1].hex().to_string());
                    scope.spawn(move || {
                        let (path, verified) = blob(desc)?;
                        let layer = Layer {
                            desc,
                            diff_id,
                            chain,
                            parent,
                        };
                        self.unpack_layer(origin, &path, verified, &layer)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BaseError::Invalid("layer unpack panicked".into())))
                        .err()
                })
                .collect()
        });
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let layers: Vec<String> = chain_ids.iter().map(|c| c.hex().to_string()).collect();
        let chain = layers
            .iter()
            .rev()
            .filter(|id| self.snapshots.get(id).is_some_and(|m| !m.empty))
            .cloned()
            .collect();
        Ok(BaseImage {
            source: None,
            state: ImageState {
                key: key::image(config_digest),
                chain,
                layers,
                image,
            },
        })
    }

    /// Unpack one layer blob into a snapshot, checking its diff id and, unless `verified`,
    /// its digest.
    fn unpack_layer(
        &self,
        origin: &str,
        path: &Path,
        verified: bool,
        layer: &Layer<'_>,
    ) -> Result<(), BaseError> {
        let Layer {
            desc,
            diff_id,
            chain,
            parent,
        } = layer;
        let base_err =
            |m: String| BaseError::Invalid(format!("layer {} of {origin}: {m}", desc.digest));
        let file = File::open(path)?;
        let on_disk = file.metadata()?.len();
        let mut hashing = HashingReader::new(file);
        if verified {
            hashing = hashing.unhashed();
        }
        let pending = self.snapshots.begin()?;
        let opts = UnpackOptions::image_layer();
        let unpacked = extract::unpack(&mut hashing, &pending.fs(), &opts).map_err(|source| {
            BaseError::Unpack {
                origin: origin.to_string(),
                digest: desc.digest.to_string(),
                source,
            }
        })?;
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        let (digest, size) = if verified {
            (desc.digest.clone(), on_disk)
        } else {
            hashing.finish()
        };
        if digest != desc.digest {
            return Err(base_err(format!("the blob's content has digest {digest}")));
        }
        if unpacked.diff_id != **diff_id {
            return Err(base_err(format!(
                "its diff id is {}, the config says {diff_id}",
                unpacked.diff_id
            )));
        }
        // Keep the original blob: the exported image reuses it as it is.
        let store = self.snapshots.store();
        if !store.has_blob(&digest) {
            let mut writer = store.blob_writer()?;
            std::io::copy(&mut File::open(path)?, &mut writer)?;
            writer.commit()?;
        }
        let blob = LayerBlob {
            diff_id: (*diff_id).clone(),
            digest,
            size,
            media_type: layer_media_type(&desc.media_type),
        };
        self.snapshots.commit(
            pending,
            chain.hex(),
            SnapshotMeta {
                parent: parent.clone(),
                diff_id: Some((*diff_id).clone()),
                empty: false,
                blob: Some(blob),
            },
        )?;
        Ok(())
    }

    /// A local directory as an image: one layer with its content, owners kept, no config.
    fn import_dir(&self, dir: &Path, platform: &Platform) -> Result<BaseImage, BaseError> {
        let ctx = crate::context::Context::from_dir(dir, None)
            .map_err(|e| BaseError::Unreadable(e.to_string()))?;
        let mut hashes = crate::context::hash::HashCache::default();
        let content = crate::context::hash::digest_paths(&ctx, &[String::new()], &mut hashes)?;
        let id = key::step(
            None,
            "dir",
            &dir.display().to_string(),
            std::slice::from_ref(&content),
        );
        if self.snapshots.get(id.hex()).is_none() {
            let pending = self.snapshots.begin()?;
            crate::copy::copy_tree(crate::copy::Source::Context(&ctx), ".", &pending.fs())
                .map_err(|e| BaseError::Unreadable(format!("{}: {e}", dir.display())))?;
            self.snapshots.commit(
                pending,
                id.hex(),
                SnapshotMeta {
                    parent: None,
                    diff_id: None,
                    empty: false,
                    blob: None,
                },
            )?;
        }
        let mut image = Image::scratch(platform);
        image.history.push(crate::image::oci::History {
            created_by: Some(format!("local directory {}", dir.display())),
            ..Default::default()
        });
        let layers = vec![id.hex().to_string()];
        Ok(BaseImage {
            source: None,
            state: ImageState {
                key: id,
                chain: layers.clone(),
                layers,
                image,
            },
        })
    }
}
