//! OCI image layouts (read and write) and docker-archive tarballs (write).
//!
//! A layout is `oci-layout`, `index.json` and `blobs/<alg>/<hex>`. Reading one picks a manifest by
//! tag (the `org.opencontainers.image.ref.name` annotation), by digest, or the only one there
//! is, and descends through an index to the manifest for the wanted platform.
//!
//! A docker-archive is what `docker save` writes and `docker load` and `podman load` read:
//! `manifest.json` naming the config and the layers. Kiln writes the layers compressed under
//! `blobs/sha256/`, beside an OCI `index.json`, the shape `docker save` itself produces since
//! Docker 25; both loaders detect the compression.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::oci::*;
use crate::digest::Digest;
use crate::store::Store;

/// Why a layout could not be read.
#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{0} is not an OCI layout: {1}")]
    NotALayout(PathBuf, String),
    #[error("no image {wanted} in the OCI layout {dir}; it has: {have}")]
    NoSuchImage {
        dir: PathBuf,
        wanted: String,
        have: String,
    },
    #[error("the image in {0} has no manifest for {1}; it has: {2}")]
    NoPlatform(PathBuf, String, String),
    #[error("blob {0} of {1}: {2}")]
    Blob(Digest, PathBuf, String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// An image found in a layout.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub image: Image,
    pub config_digest: Digest,
}

/// A read-only OCI layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        let marker = fs::read_to_string(dir.join("oci-layout"))
            .map_err(|e| LayoutError::NotALayout(dir.to_path_buf(), format!("oci-layout: {e}")))?;
        if !marker.contains("imageLayoutVersion") {
            return Err(LayoutError::NotALayout(
                dir.to_path_buf(),
                "oci-layout has no imageLayoutVersion".into(),
            ));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Read a blob and check it against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let bytes = fs::read(self.blob_path(digest))
            .map_err(|e| LayoutError::Blob(digest.clone(), self.dir.clone(), e.to_string()))?;
        if Digest::of(&bytes) != *digest {
            return Err(LayoutError::Blob(
                digest.clone(),
                self.dir.clone(),
                "content does not match its digest".into(),
            ));
        }
        Ok(bytes)
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, digest: &Digest) -> Result<T, LayoutError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| LayoutError::Blob(digest.clone(), self.dir.clone(), e.to_string()))
    }

    /// Find an image: `wanted` is a tag (`1.0`), a full name with tag, a digest, or `None` for
    /// the only image of the layout.
    pub fn resolve(
        &self,
        wanted: Option<&str>,
        platform: &Platform,
    ) -> Result<Resolved, LayoutError> {
        let index_bytes = fs::read(self.dir.join("index.json"))
            .map_err(|e| LayoutError::NotALayout(self.dir.clone(), format!("index.json: {e}")))?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| LayoutError::NotALayout(self.dir.clone(), format!("index.json: {e}")))?;
        let names = || {
            index
                .manifests
                .iter()
                .map(|m| {
                    m.annotations
                        .get(ANNOTATION_REF_NAME)
                        .cloned()
                        .unwrap_or_else(|| m.digest.to_string())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pick = match wanted {
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => None,
            Some(w) if w.starts_with("sha256:") => {
                index.manifests.iter().find(|m| m.digest.as_str() == w)
            }
            Some(w) => index.manifests.iter().find(|m| {
                let name = m.annotations.get(ANNOTATION_REF_NAME);
                let full = m.annotations.get(ANNOTATION_IMAGE_NAME);
                name.is_some_and(|n| n == w || w.rsplit_once(':').is_some_and(|(_, tag)| tag == n))
                    || full.is_some_and(|f| f == w)
            }),
        };
        let Some(desc) = pick.cloned() else {
            return Err(LayoutError::NoSuchImage {
                dir: self.dir.clone(),
                wanted: wanted.unwrap_or("(the only one)").to_string(),
                have: names(),
            });
        };
        self.descend(desc, platform)
    }

    fn descend(&self, desc: Descriptor, platform: &Platform) -> Result<Resolved, LayoutError> {
        let is_index =
            desc.media_type == MEDIA_TYPE_INDEX || desc.media_type == MEDIA_TYPE_DOCKER_LIST;
        if is_index {
            let index: Index = self.json(&desc.digest)?;
            let found = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
                .cloned();
            return match found {
                Some(m) => self.descend(m, platform),
                None => Err(LayoutError::NoPlatform(
                    self.dir.clone(),
                    platform.to_string(),
                    index
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            };
        }
        let manifest: Manifest = self.json(&desc.digest)?;
        let image: Image = self.json(&manifest.config.digest)?;
        if !platform.matches(&image.platform()) {
            return Err(LayoutError::NoPlatform(
                self.dir.clone(),
                platform.to_string(),
                image.platform().to_string(),
            ));
        }
        Ok(Resolved {
            manifest_digest: desc.digest,
            config_digest: manifest.config.digest.clone(),
            manifest,
            image,
        })
    }
}

/// An image ready to be written: its blobs are in the store.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: Digest,
    pub config_bytes: Vec<u8>,
    /// The platform its entry in an image index names (`unknown/unknown` for an attestation
    /// manifest).
    pub platform: Platform,
    /// The annotations of its entry in an image index (an attestation manifest's reference
    /// type and digest).
    pub entry_annotations: BTreeMap<String, String>,
}

/// What a build writes: one image manifest, or an image index over one manifest per platform
/// and the attestation manifests that describe them. BuildKit writes an index when several
/// platforms are built or attestations are attached, and a lone manifest otherwise; so does
/// Kiln.
#[derive(Debug, Clone)]
pub enum Export {
    Image(Box<Artifact>),
    Index {
        /// The platforms' images first, then the attestation manifests, as BuildKit orders them.
        manifests: Vec<Artifact>,
        bytes: Vec<u8>,
        digest: Digest,
    },
}

impl Export {
    /// An index over `manifests`, its document put in `store`.
    pub fn index(store: &Store, manifests: Vec<Artifact>) -> io::Result<Export> {
        let index = Index::new(manifests.iter().map(Artifact::index_entry).collect());
        let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
        let digest = store.put_blob(&bytes)?;
        Ok(Export::Index {
            manifests,
            bytes,
            digest,
        })
    }

    /// The digest of the manifest or index: what a push tags and what the build reports.
    pub fn digest(&self) -> &Digest {
        match self {
            Export::Image(a) => &a.manifest_digest,
            Export::Index { digest, .. } => digest,
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Export::Image(a) => a
                .manifest
                .media_type
                .as_deref()
                .unwrap_or(MEDIA_TYPE_MANIFEST),
            Export::Index { .. } => MEDIA_TYPE_INDEX,
        }
    }

    /// The top document's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Export::Image(a) => &a.manifest_bytes,
            Export::Index { bytes, .. } => bytes,
        }
    }

    /// Every manifest: the image, or each entry of the index.
    pub fn manifests(&self) -> &[Artifact] {
        match self {
            Export::Image(a) => std::slice::from_ref(&**a),
            Export::Index { manifests, .. } => manifests,
        }
    }

    /// Every blob of every manifest (configs and layers), each once.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut seen = std::collections::HashSet::new();
        self.manifests()
            .iter()
            .flat_map(Artifact::blobs)
            .filter(|d| seen.insert(d.digest.clone()))
            .collect()
    }

    /// The entry of a layout's `index.json` for it, named `name`.
    fn descriptor(&self, name: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(
            self.media_type(),
            self.digest().clone(),
            self.bytes().len() as u64,
        );
        if let Some(name) = name {
            d.annotations
                .insert(ANNOTATION_IMAGE_NAME.into(), name.into());
            d.annotations
                .insert(ANNOTATION_REF_NAME.into(), tag_of(name).into());
        }
        d
    }

    /// The manifests and the index, as (digest, bytes), the index last.
    fn documents(&self) -> Vec<(&Digest, &[u8])> {
        let mut out: Vec<(&Digest, &[u8])> = self
            .manifests()
            .iter()
            .map(|a| (&a.manifest_digest, a.manifest_bytes.as_slice()))
            .collect();
        if let Export::Index { bytes, digest, .. } = self {
            out.push((digest, bytes));
        }
        out
    }
}

impl From<Artifact> for Export {
    fn from(a: Artifact) -> Export {
        Export::Image(Box::new(a))
    }
}

impl Artifact {
    /// An OCI manifest over a config and layers, the config and the manifest put in `store`
    /// (the layers must be there already).
    pub fn put(
        store: &Store,
        config_media_type: &str,
        config_bytes: Vec<u8>,
        layers: Vec<Descriptor>,
        artifact_type: Option<String>,
        platform: Platform,
    ) -> io::Result<Artifact> {
        let config_digest = store.put_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.into()),
            artifact_type,
            config: Descriptor::new(config_media_type, config_digest, config_bytes.len() as u64),
            layers,
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        let manifest_digest = store.put_blob(&manifest_bytes)?;
        Ok(Artifact {
            manifest,
            manifest_bytes,
            manifest_digest,
            config_bytes,
            platform,
            entry_annotations: BTreeMap::new(),
        })
    }

    /// Its entry in an image index: platform and annotations.
    pub fn index_entry(&self) -> Descriptor {
        let mut d = Descriptor::new(
            self.manifest
                .media_type
                .as_deref()
                .unwrap_or(MEDIA_TYPE_MANIFEST),
            self.manifest_digest.clone(),
            self.manifest_bytes.len() as u64,
        );
        d.annotations = self.entry_annotations.clone();
        d.platform = Some(self.platform.clone());
        d
    }

    /// Every blob of the image: (digest, media type).
    pub fn blobs(&self) -> Vec<&Descriptor> {
        std::iter::once(&self.manifest.config)
            .chain(&self.manifest.layers)
            .collect()
    }
}

/// The tag part of a name (`reg/app:1.0` → `1.0`), or the name itself.
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.rsplit_once(':').map_or(name, |(_, t)| t)
}

/// Write an image (or an index of images) to an OCI layout directory, adding it to an existing
/// layout's index. An index is an entry of the layout's `index.json` itself, as BuildKit's OCI
/// exporter writes a multi-platform image.
pub fn write_layout_dir(
    store: &Store,
    export: &Export,
    dir: &Path,
    name: Option<&str>,
) -> io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for desc in export.blobs() {
        place_blob(
            &store.blob_path(&desc.digest),
            &blobs.join(desc.digest.hex()),
        )?;
    }
    for (digest, bytes) in export.documents() {
        fs::write(blobs.join(digest.hex()), bytes)?;
    }
    let mut index: Index = fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| Index::new(vec![]));
    let desc = export.descriptor(name);
    let tag = desc.annotations.get(ANNOTATION_REF_NAME).cloned();
    // A tag names one manifest: an older manifest with the same tag loses it.
    index.manifests.retain(|m| {
        m.digest != desc.digest
            && (tag.is_none() || m.annotations.get(ANNOTATION_REF_NAME) != tag.as_ref())
    });
    index.manifests.push(desc);
    let tmp = dir.join("index.json.tmp");
    fs::write(&tmp, serde_json::to_vec(&index).map_err(io::Error::other)?)?;
    fs::rename(tmp, dir.join("index.json"))
}

/// Hardlink a blob into place when possible (same filesystem), else copy it.
fn place_blob(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        return Ok(());
    }
    if fs::hard_link(from, to).is_err() {
        let tmp = to.with_extension("tmp");
        fs::copy(from, &tmp)?;
        fs::rename(tmp, to)?;
    }
    Ok(())
}

struct TarOut<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn new(w: W) -> Self {
        TarOut {
            builder: tar::Builder::new(w),
        }
    }

    fn header(path: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).expect("short archive paths");
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h
    }

    fn bytes(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.builder
            .append(&Self::header(path, data.len() as u64), data)
    }

    fn file(&mut self, path: &str, src: &Path) -> io::Result<()> {
        let f = File::open(src)?;
        let len = f.metadata()?.len();
        self.builder.append(&Self::header(path, len), f)
    }

    fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).expect("short archive paths");
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        self.builder.append(&h, io::empty())
    }

    fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

fn layout_entries<W: Write>(
    out: &mut TarOut<W>,
    store: &Store,
    export: &Export,
    name: Option<&str>,
) -> io::Result<()> {
    out.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = Index::new(vec![export.descriptor(name)]);
    out.bytes(
        "index.json",
        &serde_json::to_vec(&index).map_err(io::Error::other)?,
    )?;
    out.dir("blobs/")?;
    out.dir("blobs/sha256/")?;
    for desc in export.blobs() {
        out.file(
            &format!("blobs/sha256/{}", desc.digest.hex()),
            &store.blob_path(&desc.digest),
        )?;
    }
    for (digest, bytes) in export.documents() {
        out.bytes(&format!("blobs/sha256/{}", digest.hex()), bytes)?;
    }
    Ok(())
}

/// Write an image (or an index of images) as an OCI layout tarball.
pub fn write_layout_tar<W: Write>(
    store: &Store,
    export: &Export,
    w: W,
    name: Option<&str>,
) -> io::Result<W> {
    let mut out = TarOut::new(w);
    layout_entries(&mut out, store, export, name)?;
    out.finish()
}

#[derive(Serialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
    #[serde(rename = "LayerSources", skip_serializing_if = "BTreeMap::is_empty")]
    layer_sources: BTreeMap<String, Descriptor>,
}

/// Write an image as a docker-archive tarball (`docker load`, `podman load`). A docker-archive
/// holds one image of one platform: `manifest.json` has no place for an index.
pub fn write_docker_archive<W: Write>(
    store: &Store,
    artifact: &Artifact,
    w: W,
    tags: &[String],
) -> io::Result<W> {
    let mut out = TarOut::new(w);
    let export = Export::Image(Box::new(artifact.clone()));
    layout_entries(&mut out, store, &export, tags.first().map(String::as_str))?;
    let entry = DockerManifestEntry {
        config: format!("blobs/sha256/{}", artifact.manifest.config.digest.hex()),
        repo_tags: tags.iter().map(|t| docker_tag(t)).collect(),
        layers: artifact
            .manifest
            .layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
            .collect(),
        layer_sources: BTreeMap::new(),
    };
    out.bytes(
        "manifest.json",
        &serde_json::to_vec(&[entry]).map_err(io::Error::other)?,
    )?;
    out.finish()
}

/// The familiar form of a tag for `RepoTags` (`docker.io/library/app:1` → `app:1`), with
/// `:latest` added when the name has no tag.
fn docker_tag(name: &str) -> String {
    let with_tag =
        if tag_of(name) == name || name.rsplit('/').next().is_some_and(|l| !l.contains(':')) {
            format!("{name}:latest")
        } else {
            name.to_string()
        };
    with_tag
        .strip_prefix("docker.io/library/")
        .or_else(|| with_tag.strip_prefix("docker.io/"))
        .map_or(with_tag.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names() {
        assert_eq!(tag_of("reg:5000/app:1.0"), "1.0");
        assert_eq!(tag_of("reg:5000/app"), "reg:5000/app");
        assert_eq!(docker_tag("docker.io/library/app:1"), "app:1");
        assert_eq!(docker_tag("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(docker_tag("app"), "app:latest");
    }
}
