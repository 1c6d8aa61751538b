//! Exporting and importing the step cache (`--cache-to`, `--cache-from`), so that a build on a
//! fresh machine or an ephemeral pod gets the hits of an earlier one.
//!
//! A cache export is one OCI image manifest: its config, of media type
//! [`CONFIG_MEDIA_TYPE`], lists the step results by cache key, and its layers are their layer
//! blobs. It is an ordinary manifest (not an index), so every registry that stores images stores
//! it, and an OCI layout holds it as it holds an image.
//!
//! Importing reads the config only. A hit on an imported record costs nothing until something
//! needs its content: a later step that runs on top of it, a stage that copies from it, or an
//! output that must carry its blob. Then the blob is fetched from where the cache came from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::image::layout::{self, Artifact, Export, Layout};
use crate::image::oci::{ANNOTATION_REF_NAME, Descriptor, Index, Manifest, Platform};
use crate::snapshot::layer::LayerBlob;
use crate::store::Store;

/// The config media type (and artifact type) of a Kiln cache manifest.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";

/// Which step results an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The layers of the exported image only (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran.
    Max,
}

/// A `--cache-to` or `--cache-from` destination or source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// `type=local,dest=DIR` / `type=local,src=DIR`: an OCI layout directory.
    Local {
        dir: PathBuf,
        tag: String,
        mode: Mode,
    },
    /// `type=registry,ref=REF`.
    Registry { reference: String, mode: Mode },
    /// `type=inline`: the records ride in the image config.
    Inline,
}

impl CacheSpec {
    /// Parse a `--cache-to` (`export`) or `--cache-from` spec. A bare reference means
    /// `type=registry,ref=...`, as in buildx.
    pub fn parse(text: &str, export: bool) -> Result<CacheSpec, String> {
        let flag = if export { "--cache-to" } else { "--cache-from" };
        if !text.contains('=') {
            return Ok(CacheSpec::Registry {
                reference: text.to_string(),
                mode: Mode::Min,
            });
        }
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{flag} {text:?}: expected key=value, got {part:?}"))?;
            fields.insert(k, v);
        }
        let mode = match fields.remove("mode") {
            None | Some("min") => Mode::Min,
            Some("max") => Mode::Max,
            Some(other) => return Err(format!("{flag} {text:?}: mode {other:?}: use min or max")),
        };
        // Options BuildKit takes that change nothing here.
        for ignored in [
            "ignore-error",
            "oci-mediatypes",
            "image-manifest",
            "compression",
            "compression-level",
            "force-compression",
        ] {
            fields.remove(ignored);
        }
        let kind = fields.remove("type").unwrap_or("registry");
        let spec = match kind {
            "local" => {
                let dir = if export {
                    fields.remove("dest")
                } else {
                    fields.remove("src").or_else(|| fields.remove("dest"))
                }
                .ok_or_else(|| {
                    format!(
                        "{flag} {text:?}: {}= is required",
                        if export { "dest" } else { "src" }
                    )
                })?;
                let tag = fields.remove("tag").unwrap_or("latest").to_string();
                CacheSpec::Local {
                    dir: PathBuf::from(dir),
                    tag,
                    mode,
                }
            }
            "registry" => {
                let reference = fields
                    .remove("ref")
                    .ok_or_else(|| format!("{flag} {text:?}: ref= is required"))?
                    .to_string();
                CacheSpec::Registry { reference, mode }
            }
            "inline" if export => CacheSpec::Inline,
            other => {
                return Err(format!(
                    "{flag} {text:?}: unknown type {other:?}; use {}",
                    if export {
                        "registry, local or inline"
                    } else {
                        "registry or local"
                    }
                ));
            }
        };
        if let Some(k) = fields.keys().next() {
            return Err(format!("{flag} {text:?}: unknown option {k:?}"));
        }
        Ok(spec)
    }

    pub fn mode(&self) -> Mode {
        match self {
            CacheSpec::Local { mode, .. } | CacheSpec::Registry { mode, .. } => *mode,
            CacheSpec::Inline => Mode::Min,
        }
    }
}

/// A `--cache-to`: where, and whether a failure to export only warns (`ignore-error=true`, as
/// in BuildKit) rather than failing the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub spec: CacheSpec,
    pub ignore_error: bool,
}

impl CacheExport {
    pub fn parse(text: &str) -> Result<CacheExport, String> {
        let spec = CacheSpec::parse(text, true)?;
        let mut ignore_error = false;
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("ignore-error", "true")) => ignore_error = true,
                Some(("ignore-error", "false")) => ignore_error = false,
                Some(("ignore-error", other)) => {
                    return Err(format!(
                        "--cache-to {text:?}: ignore-error {other:?}: use true or false"
                    ));
                }
                _ => {}
            }
        }
        Ok(CacheExport { spec, ignore_error })
    }
}

/// One step result in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheRecord {
    /// The step's cache key (hex), which is also its snapshot id.
    pub key: String,
    /// The step changed nothing: there is no blob to fetch.
    #[serde(default)]
    pub empty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerBlob>,
    /// Other keys that find this result: the definition keys of a COPY from a stage, which
    /// is keyed by the content it copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The config of a cache manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub records: Vec<CacheRecord>,
}

/// Where an imported cache's blobs (or a lazily pulled base image's layers) come from.
pub trait BlobSource: Send + Sync {
    /// For messages: the directory or reference.
    fn describe(&self) -> String;
    /// Put a blob into `store`, verified against its digest: nothing else may enter the store.
    fn fetch(&self, blob: &LayerBlob, store: &Store) -> Result<(), BlobError>;
}

/// Why a blob could not be fetched from a [`BlobSource`], typed so that a refused credential
/// or a full disk keeps its reason (`crate::result::Reason`).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{what}: {source}")]
    Registry {
        what: String,
        source: crate::registry::RegistryError,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl BlobError {
    /// Whether the registry refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, BlobError::Registry { source, .. } if source.is_auth())
    }
}

/// An imported cache: records by key, and where to get their blobs.
pub struct Imported {
    pub source: Arc<dyn BlobSource>,
    pub records: HashMap<String, CacheRecord>,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Imported({}, {} records)",
            self.source.describe(),
            self.records.len()
        )
    }
}

impl Imported {
    pub fn from_config(source: Arc<dyn BlobSource>, config: &[u8]) -> Result<Imported, String> {
        let config: CacheConfig = serde_json::from_slice(config).map_err(|e| {
            format!(
                "the cache config of {} is not valid: {e}",
                source.describe()
            )
        })?;
        if config.version != 1 {
            return Err(format!(
                "the cache of {} has version {}; this Kiln reads version 1",
                source.describe(),
                config.version
            ));
        }
        let mut records = HashMap::new();
        for r in config.records {
            for alias in &r.aliases {
                records.entry(alias.clone()).or_insert_with(|| r.clone());
            }
            records.insert(r.key.clone(), r);
        }
        Ok(Imported { source, records })
    }
}

/// The config and manifest of an export, with the blobs it needs. The blobs must be in `store`.
pub fn cache_artifact(store: &Store, records: Vec<CacheRecord>) -> io::Result<Artifact> {
    let mut seen = HashSet::new();
    let layers: Vec<Descriptor> = records
        .iter()
        .filter_map(|r| r.layer.as_ref())
        .filter(|b| seen.insert(b.digest.clone()))
        .map(|b| Descriptor::new(&b.media_type, b.digest.clone(), b.size))
        .collect();
    let config_bytes = serde_json::to_vec(&CacheConfig {
        version: 1,
        records,
    })
    .map_err(io::Error::other)?;
    Artifact::put(
        store,
        CONFIG_MEDIA_TYPE,
        config_bytes,
        layers,
        Some(CONFIG_MEDIA_TYPE.into()),
        Platform::host(),
    )
}

/// Write an export into an OCI layout directory under `tag`, replacing what the tag named.
pub fn export_local(store: &Store, artifact: &Artifact, dir: &Path, tag: &str) -> io::Result<()> {
    layout::write_layout_dir(
        store,
        &Export::Image(Box::new(artifact.clone())),
        dir,
        Some(tag),
    )
}

/// An OCI layout directory as a blob source.
struct LocalSource {
    layout: Layout,
}

impl BlobSource for LocalSource {
    fn describe(&self) -> String {
        self.layout.dir().display().to_string()
    }
    fn fetch(&self, blob: &LayerBlob, store: &Store) -> Result<(), BlobError> {
        let copy = || -> io::Result<()> {
            let mut file = fs::File::open(self.layout.blob_path(&blob.digest))?;
            let mut writer = store.blob_writer()?;
            io::copy(&mut file, &mut writer)?;
            writer.commit_verified(&blob.digest).map(drop)
        };
        copy().map_err(|source| BlobError::Io {
            what: format!("layer {} from the cache {}", blob.digest, self.describe()),
            source,
        })
    }
}

/// Read the export tagged `tag` from an OCI layout directory. `Ok(None)` when there is none
/// (a first build): that is not an error.
pub fn import_local(dir: &Path, tag: &str) -> Result<Option<Imported>, String> {
    if !dir.join("index.json").exists() {
        return Ok(None);
    }
    let layout = Layout::open(dir).map_err(|e| e.to_string())?;
    let index: Index = serde_json::from_slice(
        &fs::read(dir.join("index.json")).map_err(|e| format!("{}: {e}", dir.display()))?,
    )
    .map_err(|e| format!("{}/index.json: {e}", dir.display()))?;
    let Some(desc) = index.manifests.iter().find(|m| {
        m.annotations
            .get(ANNOTATION_REF_NAME)
            .is_some_and(|t| t == tag)
    }) else {
        return Ok(None);
    };
    let manifest: Manifest =
        serde_json::from_slice(&layout.read_blob(&desc.digest).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: the manifest tagged {tag}: {e}", dir.display()))?;
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "{} tagged {tag} is not a Kiln cache (its config is {})",
            dir.display(),
            manifest.config.media_type
        ));
    }
    let config = layout
        .read_blob(&manifest.config.digest)
        .map_err(|e| e.to_string())?;
    Imported::from_config(Arc::new(LocalSource { layout }), &config).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn specs_parse_like_buildx() {
        assert_eq!(
            CacheSpec::parse("type=local,dest=/c,mode=max", true).unwrap(),
            CacheSpec::Local {
                dir: "/c".into(),
                tag: "latest".into(),
                mode: Mode::Max
            }
        );
        assert_eq!(
            CacheSpec::parse("type=local,src=/c,tag=main", false).unwrap(),
            CacheSpec::Local {
                dir: "/c".into(),
                tag: "main".into(),
                mode: Mode::Min
            }
        );
        assert_eq!(
            CacheSpec::parse(
                "type=registry,ref=r.io/app:cache,mode=max,ignore-error=true",
                true
            )
            .unwrap(),
            CacheSpec::Registry {
                reference: "r.io/app:cache".into(),
                mode: Mode::Max
            }
        );
        assert_eq!(
            CacheSpec::parse("r.io/app:cache", false).unwrap(),
            CacheSpec::Registry {
                reference: "r.io/app:cache".into(),
                mode: Mode::Min
            }
        );
        assert_eq!(
            CacheSpec::parse("type=inline", true).unwrap(),
            CacheSpec::Inline
        );
        for (bad, export, want) in [
            ("type=local", true, "dest= is required"),
            ("type=local", false, "src= is required"),
            ("type=registry", true, "ref= is required"),
            ("type=local,dest=x,mode=most", true, "use min or max"),
            ("type=gha", true, "unknown type"),
            ("type=inline", false, "unknown type"),
            ("type=local,dest=x,colour=red", true, "unknown option"),
        ] {
            let e = CacheSpec::parse(bad, export).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(
            CacheExport::parse("type=registry,ref=r/a:c,ignore-error=true")
                .unwrap()
                .ignore_error
        );
        assert!(
            !CacheExport::parse("type=registry,ref=r/a:c")
                .unwrap()
                .ignore_error
        );
        assert!(CacheExport::parse("type=inline,ignore-error=maybe").is_err());
    }

    #[test]
    fn an_export_round_trips_through_a_layout() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("store")).unwrap();
        let blob = store.put_blob(b"layer bytes").unwrap();
        let layer = LayerBlob {
            diff_id: Digest::of(b"tar"),
            digest: blob.clone(),
            size: 11,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        let records = vec![
            CacheRecord {
                key: "aa".into(),
                empty: false,
                layer: Some(layer.clone()),
                aliases: vec![],
            },
            CacheRecord {
                key: "bb".into(),
                empty: true,
                layer: None,
                aliases: vec![],
            },
            CacheRecord {
                key: "cc".into(),
                empty: false,
                layer: Some(layer.clone()),
                aliases: vec![],
            },
        ];
        let artifact = cache_artifact(&store, records.clone()).unwrap();
        assert_eq!(artifact.manifest.layers.len(), 1, "a blob is listed once");
        let dir = d.path().join("cache");
        export_local(&store, &artifact, &dir, "latest").unwrap();
        assert!(import_local(&dir, "other").unwrap().is_none());
        assert!(
            import_local(&d.path().join("nothing"), "latest")
                .unwrap()
                .is_none()
        );
        let imported = import_local(&dir, "latest").unwrap().unwrap();
        assert_eq!(imported.records.len(), 3);
        assert_eq!(imported.records["aa"], records[0]);
        assert!(imported.records["bb"].empty);
        let other = Store::open(d.path().join("other")).unwrap();
        imported.source.fetch(&layer, &other).unwrap();
        assert_eq!(other.read_blob(&blob).unwrap(), b"layer bytes");
    }
}
