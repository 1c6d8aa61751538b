//! Image facts: a canonical, deterministic description of a built image.
//!
//! The reference corpus (`tests/reference/`) records, for every case, the facts of the image
//! that BuildKit built; the engine's integration tests compute the facts of the image that Kiln
//! built from the same Dockerfile and compare the two. Both sides go through this module, so a
//! difference is a difference between the images, never between two readers.
//!
//! An image is read from
//! - a docker-archive tarball (`docker save`, `podman save --format docker-archive`), or
//! - an OCI image layout, as a directory or as a tar of one (`skopeo copy oci-archive:`),
//!
//! with uncompressed, gzip or zstd layers (detected from their magic bytes, not their media
//! types). The facts are:
//! - `os`, `architecture` (and `variant`, `author` when set) and the `config` object, with keys
//!   sorted and `null` members removed;
//! - the `history`: `created_by`, `comment` and `empty_layer` of each entry, never timestamps;
//! - for each layer, every tar entry as it appears in the layer (whiteouts `.wh.NAME` and opaque
//!   markers `.wh..wh..opq` included), sorted by path: type, mode (octal, with the setuid,
//!   setgid and sticky bits), owner, size, link target, the sha256 of a regular file's content,
//!   device numbers, xattrs, and the mtime when it is deterministic (see [`FIXED_MTIME_BEFORE`]);
//! - the `filesystem`: the layers applied in order, whiteouts and opaque directories honoured,
//!   hardlinks resolved into groups.
//!
//! `skip_base` drops the first N history entries, and the layers they made, so that a case
//! compares only what its own Dockerfile added on top of the base image. The filesystem then
//! lists only the paths that the remaining layers wrote, and `removed` lists the base paths they
//! deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The value of the `format` member of every facts document.
pub const FORMAT: &str = "kiln-image-facts/v1";

/// An mtime below this (2001-09-09) is reported: it came from an archive or from
/// `SOURCE_DATE_EPOCH`, not from the clock of the build. Later mtimes are left out, because they
/// differ between two runs of the same build.
pub const FIXED_MTIME_BEFORE: u64 = 1_000_000_000;

/// How to read an image and what to leave out of its facts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Drop the first N history entries, and the layers that they made (the base image's).
    pub skip_base: usize,
    /// Which image to read when the archive or layout holds several: a repo tag
    /// (docker-archive) or an `org.opencontainers.image.ref.name` (OCI).
    pub reference: Option<String>,
}

/// An image as read from disk: its config and its layers, uncompressed.
#[derive(Debug, Clone)]
pub struct RawImage {
    pub config: Value,
    pub layers: Vec<Vec<u8>>,
}

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
        }
    }
}

/// One tar entry of a layer, or one path of the merged filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute and normalised: `/`, `/etc`, `/etc/.wh.motd`.
    pub path: String,
    pub kind: Kind,
    /// Permission bits with setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Regular files only.
    pub size: u64,
    /// Regular files only: hex sha256 of the content.
    pub sha256: Option<String>,
    /// Symlinks: the target as written. Hardlinks: the normalised path of the target.
    pub link: Option<String>,
    /// Character and block devices: `major:minor`.
    pub dev: Option<(u32, u32)>,
    pub mtime: u64,
    /// PAX `SCHILY.xattr.*` records, values as lossy UTF-8.
    pub xattrs: BTreeMap<String, String>,
}

impl Entry {
    /// Whether this entry is a whiteout (`.wh.NAME`) or an opaque marker (`.wh..wh..opq`).
    pub fn is_whiteout(&self) -> bool {
        base_name(&self.path).starts_with(".wh.")
    }
}

/// A history entry, without its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    pub empty_layer: bool,
}

/// One path of the merged filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// A hardlink is resolved: it is a `file` like its target.
    pub entry: Entry,
    /// The other paths that share this file's inode, sorted; empty when there are none.
    pub hardlinks: Vec<String>,
}

/// A layer: its entries, and the history entry that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub created_by: Option<String>,
    pub entries: Vec<Entry>,
}

/// The facts of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub skipped_history: usize,
    pub skipped_layers: usize,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    pub author: Option<String>,
    /// The `config` object, canonical: keys sorted, `null` members removed.
    pub config: Value,
    pub history: Vec<History>,
    pub layers: Vec<Layer>,
    pub filesystem: Vec<FsEntry>,
    /// With `skip_base`: the paths of the base image that the later layers removed.
    pub removed: Vec<String>,
}

/// How many history entries `image` shares with `base`: the length of `base`'s history when
/// that history, timestamps included, begins `image`'s; 0 otherwise (for example when the image
/// was built `FROM scratch`). This is the `skip_base` that leaves out exactly the base image.
pub fn base_history_len(image: &RawImage, base: &RawImage) -> usize {
    let (Some(ours), Some(theirs)) = (
        image.config["history"].as_array(),
        base.config["history"].as_array(),
    ) else {
        return 0;
    };
    if !theirs.is_empty() && ours.len() >= theirs.len() && ours[..theirs.len()] == theirs[..] {
        theirs.len()
    } else {
        0
    }
}

/// Read the image at `path` and compute its facts.
pub fn image_facts(path: &Path, opts: &Options) -> Result<Facts> {
    let raw = read_image(path, opts.reference.as_deref())
        .with_context(|| format!("reading the image at {}", path.display()))?;
    facts(&raw, opts)
}

// ---------------------------------------------------------------------------------------------
// Reading images.

/// Where the files of an archive or layout come from.
enum Files {
    Dir(PathBuf),
    Tar(HashMap<String, Vec<u8>>),
}

impl Files {
    fn open(path: &Path) -> Result<Files> {
        if path.is_dir() {
            return Ok(Files::Dir(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = decompress(bytes)?;
        let mut files = HashMap::new();
        // `docker save` writes a layer that two images entries share once, and a symlink to it
        // for the others.
        let mut links = Vec::new();
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = normalize(&entry.path()?.to_string_lossy());
            match entry.header().entry_type() {
                tar::EntryType::Regular => {
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut data)?;
                    files.insert(name, data);
                }
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name()? {
                        let target =
                            normalize(&format!("{}/{}", parent(&name), target.to_string_lossy()));
                        links.push((name, target));
                    }
                }
                tar::EntryType::Link => {
                    if let Some(target) = entry.link_name()? {
                        links.push((name, normalize(&target.to_string_lossy())));
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(data) = files.get(&target).cloned() {
                files.insert(name, data);
            }
        }
        Ok(Files::Tar(files))
    }

    fn exists(&self, name: &str) -> bool {
        match self {
            Files::Dir(dir) => dir.join(name).is_file(),
            Files::Tar(files) => files.contains_key(&normalize(name)),
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        match self {
            Files::Dir(dir) => {
                let p = dir.join(name);
                std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
            }
            Files::Tar(files) => files
                .get(&normalize(name))
                .cloned()
                .ok_or_else(|| anyhow!("the archive has no file {name}")),
        }
    }

    fn json(&self, name: &str) -> Result<Value> {
        serde_json::from_slice(&self.read(name)?).with_context(|| format!("parsing {name}"))
    }

    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| anyhow!("malformed digest {digest}"))?;
        self.read(&format!("blobs/{alg}/{hex}"))
    }
}

/// Read an image: a docker-archive or an OCI layout, as a directory or a tar.
pub fn read_image(path: &Path, reference: Option<&str>) -> Result<RawImage> {
    let files = Files::open(path)?;
    if files.exists("manifest.json") {
        read_docker_archive(&files, reference)
    } else if files.exists("index.json") {
        read_oci_layout(&files, reference)
    } else {
        bail!("neither a docker-archive (manifest.json) nor an OCI layout (index.json)")
    }
}

fn read_docker_archive(files: &Files, reference: Option<&str>) -> Result<RawImage> {
    let manifest = files.json("manifest.json")?;
    let images = manifest
        .as_array()
        .ok_or_else(|| anyhow!("manifest.json is not an array"))?;
    let image = match reference {
        Some(r) => images
            .iter()
            .find(|m| {
                m["RepoTags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(r)))
            })
            .ok_or_else(|| anyhow!("no image tagged {r} in manifest.json"))?,
        None => {
            ensure!(
                images.len() == 1,
                "manifest.json lists {} images: choose one by tag",
                images.len()
            );
            &images[0]
        }
    };
    let config_name = image["Config"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest.json: no Config"))?;
    let config = files.json(config_name)?;
    let mut layers = Vec::new();
    for layer in image["Layers"].as_array().into_iter().flatten() {
        let name = layer
            .as_str()
            .ok_or_else(|| anyhow!("manifest.json: a layer is not a string"))?;
        layers.push(decompress(files.read(name)?)?);
    }
    Ok(RawImage { config, layers })
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn read_oci_layout(files: &Files, reference: Option<&str>) -> Result<RawImage> {
    let index = files.json("index.json")?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| anyhow!("index.json has no manifests"))?;
    let desc = match reference {
        Some(r) => manifests
            .iter()
            .find(|m| {
                let name = m["annotations"]["org.opencontainers.image.ref.name"].as_str();
                name == Some(r) || name.is_some_and(|n| r.ends_with(&format!(":{n}")))
            })
            .ok_or_else(|| anyhow!("no manifest named {r} in index.json"))?,
        None => {
            ensure!(
                manifests.len() == 1,
                "index.json lists {} manifests: choose one by name",
                manifests.len()
            );
            &manifests[0]
        }
    };
    let mut desc = desc.clone();
    // Follow nested indexes down to one manifest, for the host's platform.
    for _ in 0..4 {
        let media_type = desc["mediaType"].as_str().unwrap_or_default();
        if !INDEX_TYPES.contains(&media_type) {
            break;
        }
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let nested: Value = serde_json::from_slice(&files.blob(&digest)?)?;
        let list = nested["manifests"]
            .as_array()
            .ok_or_else(|| anyhow!("index {digest} has no manifests"))?;
        let arch = host_arch();
        desc = list
            .iter()
            .find(|m| {
                m["platform"]["os"].as_str() == Some("linux")
                    && m["platform"]["architecture"].as_str() == Some(arch)
            })
            .or_else(|| list.first())
            .ok_or_else(|| anyhow!("index {digest} is empty"))?
            .clone();
    }
    let digest = desc["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("a manifest descriptor has no digest"))?;
    let manifest: Value = serde_json::from_slice(&files.blob(digest)?)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest {digest} has no config"))?;
    let config: Value = serde_json::from_slice(&files.blob(config_digest)?)?;
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let d = layer["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("a layer descriptor has no digest"))?;
        layers.push(decompress(files.blob(d)?)?);
    }
    Ok(RawImage { config, layers })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Undo gzip or zstd, recognised by their magic bytes; anything else is returned as it is.
pub fn decompress(bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .context("gunzip")?;
        Ok(out)
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(bytes.as_slice()).context("zstd -d")
    } else {
        Ok(bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Layers.

/// Normalise a path in a tar or in a link target: absolute, no `./`, no trailing `/`.
pub fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    }
}

fn child_prefix(dir: &str) -> String {
    if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    }
}

/// The entries of one uncompressed layer tar, in tar order.
pub fn read_layer(tar_bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char => Kind::Char,
            tar::EntryType::Block => Kind::Block,
            tar::EntryType::Fifo => Kind::Fifo,
            other => bail!("unexpected tar entry type {other:?}"),
        };
        let path = normalize(&entry.path()?.to_string_lossy());
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let Some(name) = ext.key()?.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(
                        name.to_string(),
                        String::from_utf8_lossy(ext.value_bytes()).into_owned(),
                    );
                }
            }
        }
        let link = match kind {
            Kind::Symlink => entry.link_name()?.map(|l| l.to_string_lossy().into_owned()),
            Kind::Hardlink => entry.link_name()?.map(|l| normalize(&l.to_string_lossy())),
            _ => None,
        };
        let dev = match kind {
            Kind::Char | Kind::Block => Some((
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            )),
            _ => None,
        };
        let (size, sha256) = if kind == Kind::File {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            (data.len() as u64, Some(hex::encode(Sha256::digest(&data))))
        } else {
            (0, None)
        };
        out.push(Entry {
            path,
            kind,
            mode: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            size,
            sha256,
            link,
            dev,
            mtime: header.mtime()?,
            xattrs,
        });
    }
    Ok(out)
}

/// The merged filesystem, built one layer at a time.
#[derive(Default)]
struct Tree {
    /// path → (entry, index of the layer that last wrote it, hardlink group).
    paths: BTreeMap<String, (Entry, usize, Option<usize>)>,
    groups: usize,
}

impl Tree {
    fn remove_subtree(&mut self, path: &str, include_self: bool) {
        if include_self {
            self.paths.remove(path);
        }
        let prefix = child_prefix(path);
        let doomed: Vec<String> = self
            .paths
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| k != "/")
            .collect();
        for k in doomed {
            self.paths.remove(&k);
        }
    }

    fn apply(&mut self, layer: usize, entries: &[Entry]) -> Result<()> {
        // Whiteouts hide what the lower layers hold, never what this layer adds: apply them first.
        for e in entries.iter().filter(|e| e.is_whiteout()) {
            let dir = parent(&e.path);
            let name = base_name(&e.path);
            if name == ".wh..wh..opq" {
                self.remove_subtree(dir, false);
            } else {
                let target = normalize(&format!("{dir}/{}", &name[4..]));
                self.remove_subtree(&target, true);
            }
        }
        for e in entries.iter().filter(|e| !e.is_whiteout()) {
            let replaces_dir = self
                .paths
                .get(&e.path)
                .is_some_and(|(old, _, _)| old.kind == Kind::Dir);
            if replaces_dir && e.kind != Kind::Dir {
                self.remove_subtree(&e.path, false);
            }
            if e.kind == Kind::Hardlink {
                let target = e.link.clone().unwrap_or_default();
                let Some((t, _, group)) = self.paths.get(&target).cloned() else {
                    bail!("{}: hardlink to {target}, which does not exist", e.path);
                };
                let group = match group {
                    Some(g) => g,
                    None => {
                        self.groups += 1;
                        let g = self.groups;
                        self.paths.get_mut(&target).unwrap().2 = Some(g);
                        g
                    }
                };
                let mut resolved = t;
                resolved.path = e.path.clone();
                self.paths
                    .insert(e.path.clone(), (resolved, layer, Some(group)));
            } else {
                self.paths.insert(e.path.clone(), (e.clone(), layer, None));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Facts.

/// Compute the facts of an image already read.
pub fn facts(raw: &RawImage, opts: &Options) -> Result<Facts> {
    let config = &raw.config;
    let history: Vec<History> = config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| History {
            created_by: h["created_by"].as_str().map(str::to_string),
            comment: h["comment"].as_str().map(str::to_string),
            author: h["author"].as_str().map(str::to_string),
            empty_layer: h["empty_layer"].as_bool().unwrap_or(false),
        })
        .collect();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .map_or(0, |d| d.len());
    ensure!(
        diff_ids == raw.layers.len(),
        "the config lists {diff_ids} diff_ids for {} layers",
        raw.layers.len()
    );
    ensure!(
        opts.skip_base <= history.len(),
        "cannot skip {} base history entries of {}",
        opts.skip_base,
        history.len()
    );
    let layer_history: Vec<&History> = history.iter().filter(|h| !h.empty_layer).collect();
    if !history.is_empty() {
        ensure!(
            layer_history.len() == raw.layers.len(),
            "the history has {} entries with a layer, the image {} layers",
            layer_history.len(),
            raw.layers.len()
        );
    }
    let skipped_layers = history[..opts.skip_base]
        .iter()
        .filter(|h| !h.empty_layer)
        .count();

    let mut tree = Tree::default();
    let mut base_paths = BTreeSet::new();
    let mut layers = Vec::new();
    for (i, bytes) in raw.layers.iter().enumerate() {
        let entries = read_layer(bytes).with_context(|| format!("reading layer {i}"))?;
        tree.apply(i, &entries)
            .with_context(|| format!("applying layer {i}"))?;
        if i + 1 == skipped_layers {
            base_paths = tree.paths.keys().cloned().collect();
        }
        if i >= skipped_layers {
            let mut sorted = entries;
            sorted.sort_by(|a, b| a.path.cmp(&b.path));
            layers.push(Layer {
                created_by: layer_history.get(i).and_then(|h| h.created_by.clone()),
                entries: sorted,
            });
        }
    }

    let mut members: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (path, (_, _, group)) in &tree.paths {
        if let Some(g) = group {
            members.entry(*g).or_default().push(path.clone());
        }
    }
    let filesystem = tree
        .paths
        .iter()
        .filter(|(_, (_, layer, _))| *layer >= skipped_layers)
        .map(|(path, (entry, _, group))| FsEntry {
            entry: entry.clone(),
            hardlinks: group
                .and_then(|g| members.get(&g))
                .map(|m| m.iter().filter(|p| *p != path).cloned().collect())
                .unwrap_or_default(),
        })
        .collect();
    let removed = base_paths
        .into_iter()
        .filter(|p| !tree.paths.contains_key(p))
        .collect();

    Ok(Facts {
        skipped_history: opts.skip_base,
        skipped_layers,
        os: config["os"].as_str().map(str::to_string),
        architecture: config["architecture"].as_str().map(str::to_string),
        variant: config["variant"].as_str().map(str::to_string),
        author: config["author"]
            .as_str()
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        config: canonical(config.get("config").cloned().unwrap_or(Value::Null))
            .unwrap_or_else(|| Value::Object(Default::default())),
        history: history[opts.skip_base..].to_vec(),
        layers,
        filesystem,
        removed,
    })
}

/// Sort object keys and drop `null` members, recursively. `None` for a `null` value.
pub fn canonical(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|i| canonical(i).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| canonical(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(sorted.into_iter().collect()))
        }
        other => Some(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Output: an ordered JSON document, printed with short objects and arrays on one line.

/// Arrays and objects that fit in this many columns are printed on one line.
const WIDTH: usize = 200;

/// A JSON document whose object members keep the order in which they were added.
#[derive(Debug, Clone)]
pub enum Doc {
    Scalar(Value),
    Array(Vec<Doc>),
    Object(Vec<(String, Doc)>),
}

impl Doc {
    fn obj() -> Doc {
        Doc::Object(Vec::new())
    }

    fn with(mut self, key: &str, value: impl Into<Doc>) -> Doc {
        if let Doc::Object(members) = &mut self {
            members.push((key.to_string(), value.into()));
        }
        self
    }

    fn with_opt<T: Into<Doc>>(self, key: &str, value: Option<T>) -> Doc {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    /// A `serde_json::Value` with object keys sorted (the order of a `Doc` is for people).
    fn from_value(v: &Value) -> Doc {
        match v {
            Value::Array(items) => Doc::Array(items.iter().map(Doc::from_value).collect()),
            Value::Object(map) => {
                let mut members: Vec<(String, Doc)> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), Doc::from_value(v)))
                    .collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Doc::Object(members)
            }
            other => Doc::Scalar(other.clone()),
        }
    }

    fn compact(&self, out: &mut String) {
        match self {
            Doc::Scalar(v) => out.push_str(&v.to_string()),
            Doc::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.compact(out);
                }
                out.push(']');
            }
            Doc::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{}: ", Value::String(k.clone()));
                    v.compact(out);
                }
                out.push('}');
            }
        }
    }

    fn pretty(&self, out: &mut String, indent: usize) {
        let mut one_line = String::new();
        self.compact(&mut one_line);
        let empty = matches!(self, Doc::Array(a) if a.is_empty())
            || matches!(self, Doc::Object(o) if o.is_empty());
        if empty || one_line.len() + indent <= WIDTH || matches!(self, Doc::Scalar(_)) {
            out.push_str(&one_line);
            return;
        }
        let pad = " ".repeat(indent + 2);
        match self {
            Doc::Array(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    item.pretty(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push(']');
            }
            Doc::Object(members) => {
                out.push_str("{\n");
                for (i, (k, v)) in members.iter().enumerate() {
                    out.push_str(&pad);
                    let _ = write!(out, "{}: ", Value::String(k.clone()));
                    v.pretty(out, indent + 2);
                    out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
            Doc::Scalar(_) => unreachable!(),
        }
    }

    /// The document as indented JSON, ending with a newline.
    pub fn to_pretty_string(&self) -> String {
        let mut out = String::new();
        self.pretty(&mut out, 0);
        out.push('\n');
        out
    }

    /// The document as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Scalar(v) => v.clone(),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for Doc {
    fn from(s: &str) -> Doc {
        Doc::Scalar(Value::String(s.to_string()))
    }
}
impl From<String> for Doc {
    fn from(s: String) -> Doc {
        Doc::Scalar(Value::String(s))
    }
}
impl From<u64> for Doc {
    fn from(n: u64) -> Doc {
        Doc::Scalar(Value::from(n))
    }
}
impl From<usize> for Doc {
    fn from(n: usize) -> Doc {
        Doc::Scalar(Value::from(n))
    }
}
impl From<bool> for Doc {
    fn from(b: bool) -> Doc {
        Doc::Scalar(Value::Bool(b))
    }
}
impl From<Vec<Doc>> for Doc {
    fn from(v: Vec<Doc>) -> Doc {
        Doc::Array(v)
    }
}

fn entry_doc(e: &Entry, hardlinks: &[String]) -> Doc {
    let mut d = Doc::obj()
        .with("path", e.path.as_str())
        .with("type", e.kind.as_str())
        .with("mode", format!("{:04o}", e.mode))
        .with("uid", e.uid)
        .with("gid", e.gid);
    if e.kind == Kind::File && !e.is_whiteout() {
        d = d
            .with("size", e.size)
            .with_opt("sha256", e.sha256.as_deref());
    }
    d = d.with_opt("link", e.link.as_deref());
    if let Some((major, minor)) = e.dev {
        d = d.with("dev", format!("{major}:{minor}"));
    }
    if e.mtime < FIXED_MTIME_BEFORE {
        d = d.with("mtime", e.mtime);
    }
    if !e.xattrs.is_empty() {
        d = d.with(
            "xattrs",
            Doc::Object(
                e.xattrs
                    .iter()
                    .map(|(k, v)| (k.clone(), Doc::from(v.as_str())))
                    .collect(),
            ),
        );
    }
    if !hardlinks.is_empty() {
        d = d.with(
            "hardlinks",
            hardlinks
                .iter()
                .map(|h| Doc::from(h.as_str()))
                .collect::<Vec<_>>(),
        );
    }
    d
}

impl Facts {
    /// The facts as an ordered document.
    pub fn to_doc(&self) -> Doc {
        let history = self
            .history
            .iter()
            .map(|h| {
                Doc::obj()
                    .with_opt("created_by", h.created_by.as_deref())
                    .with_opt("comment", h.comment.as_deref())
                    .with_opt("author", h.author.as_deref())
                    .with("empty_layer", h.empty_layer)
            })
            .collect::<Vec<_>>();
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Doc::obj()
                    .with_opt("created_by", l.created_by.as_deref())
                    .with(
                        "entries",
                        l.entries
                            .iter()
                            .map(|e| entry_doc(e, &[]))
                            .collect::<Vec<_>>(),
                    )
            })
            .collect::<Vec<_>>();
        let filesystem = self
            .filesystem
            .iter()
            .map(|f| entry_doc(&f.entry, &f.hardlinks))
            .collect::<Vec<_>>();
        let mut d = Doc::obj()
            .with("format", FORMAT)
            .with("skipped_history", self.skipped_history)
            .with("skipped_layers", self.skipped_layers)
            .with_opt("os", self.os.as_deref())
            .with_opt("architecture", self.architecture.as_deref())
            .with_opt("variant", self.variant.as_deref())
            .with_opt("author", self.author.as_deref())
            .with("config", Doc::from_value(&self.config))
            .with("history", history)
            .with("layers", layers)
            .with("filesystem", filesystem);
        if self.skipped_layers > 0 {
            d = d.with(
                "removed",
                self.removed
                    .iter()
                    .map(|p| Doc::from(p.as_str()))
                    .collect::<Vec<_>>(),
            );
        }
        d
    }

    /// The facts as a `serde_json::Value`, the form the tests compare.
    pub fn to_value(&self) -> Value {
        self.to_doc().to_value()
    }

    /// The facts as the canonical text written to `tests/reference/expected/`.
    pub fn to_json_string(&self) -> String {
        self.to_doc().to_pretty_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Using the reference corpus: staging a case's context, and comparing facts with expectations.

/// The mtime that `tests/reference/record.sh` gives every file of a case's context.
pub const CONTEXT_MTIME: u64 = 1_000_000;

/// Copy a case's context from `src` to `dst` the way `record.sh` stages it for BuildKit:
/// directories 0755, files 0755 when any execute bit is set and 0644 otherwise (the modes git
/// keeps), symlinks as they are, every mtime set to [`CONTEXT_MTIME`]. A COPY then records the
/// same modes and mtimes whatever the checkout's umask and time.
pub fn stage_context(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dst)?;
    for entry in walk(src)? {
        let rel = entry.strip_prefix(src)?;
        let to = dst.join(rel);
        let meta = std::fs::symlink_metadata(&entry)?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&entry)?, &to)?;
        } else if meta.is_dir() {
            std::fs::create_dir_all(&to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
        } else {
            std::fs::copy(&entry, &to)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        }
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    // `touch -h` sets symlinks' own mtimes too, exactly as record.sh does.
    let status = std::process::Command::new("find")
        .arg(dst)
        .args(["-exec", "touch", "-h", "-d"])
        .arg(format!("@{CONTEXT_MTIME}"))
        .args(["{}", "+"])
        .status()
        .context("running find/touch")?;
    ensure!(
        status.success(),
        "setting mtimes under {} failed",
        dst.display()
    );
    Ok(())
}

/// Every path under `dir`, parents before children, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for path in names {
        out.push(path.clone());
        if std::fs::symlink_metadata(&path)?.is_dir() {
            out.extend(walk(&path)?);
        }
    }
    Ok(out)
}

/// The differences between an expectation from `tests/reference/expected/` and the facts of an
/// image (as [`Facts::to_value`] gives them), one line each; empty when they agree.
///
/// A recorded expectation must match member for member, except the members named in `ignore`
/// (for example `"mtime"`); entry lists are matched by `path`. A derived expectation
/// (`"derived": true`, written by hand) checks only what it states: `config`, `history`,
/// `layer_count`, and the fields of each `filesystem_includes` entry (`content` is for people),
/// and that no `filesystem_excludes` path exists.
pub fn compare(expected: &Value, actual: &Value, ignore: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if expected["derived"].as_bool() == Some(true) {
        for key in ["skipped_history", "config", "history"] {
            if let Some(e) = expected.get(key) {
                diff_value(key, e, &actual[key], ignore, &mut out);
            }
        }
        if let Some(n) = expected["layer_count"].as_u64() {
            let got = actual["layers"].as_array().map_or(0, Vec::len) as u64;
            if got != n {
                out.push(format!("layers: expected {n}, got {got}"));
            }
        }
        let fs = by_path(&actual["filesystem"]);
        for want in expected["filesystem_includes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = want["path"].as_str().unwrap_or_default();
            let Some(got) = fs.get(path) else {
                out.push(format!("filesystem: {path} is missing"));
                continue;
            };
            for (k, v) in want.as_object().into_iter().flatten() {
                if k != "content" && !ignore.contains(&k.as_str()) && got.get(k) != Some(v) {
                    out.push(format!(
                        "filesystem {path}: {k} expected {v}, got {}",
                        got.get(k).unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        for gone in expected["filesystem_excludes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = gone.as_str().unwrap_or_default();
            if fs.contains_key(path) {
                out.push(format!("filesystem: {path} should not exist"));
            }
        }
        return out;
    }
    diff_value("", expected, actual, ignore, &mut out);
    out
}

fn by_path(list: &Value) -> BTreeMap<&str, &Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str().map(|p| (p, e)))
        .collect()
}

fn diff_value(at: &str, e: &Value, a: &Value, ignore: &[&str], out: &mut Vec<String>) {
    let sub = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (e, a) {
        (Value::Object(em), Value::Object(am)) => {
            let keys: BTreeSet<&String> = em.keys().chain(am.keys()).collect();
            for k in keys {
                if ignore.contains(&k.as_str()) {
                    continue;
                }
                match (em.get(k), am.get(k)) {
                    (Some(ev), Some(av)) => diff_value(&sub(k), ev, av, ignore, out),
                    (Some(ev), None) => out.push(format!("{}: missing, expected {ev}", sub(k))),
                    (None, Some(av)) => out.push(format!("{}: unexpected {av}", sub(k))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(ea), Value::Array(aa))
            if ea.iter().chain(aa).all(|v| v["path"].is_string()) && !ea.is_empty() =>
        {
            let (em, am) = (by_path(e), by_path(a));
            let keys: BTreeSet<&&str> = em.keys().chain(am.keys()).collect();
            for k in keys {
                match (em.get(*k), am.get(*k)) {
                    (Some(ev), Some(av)) => diff_value(&format!("{at}[{k}]"), ev, av, ignore, out),
                    (Some(_), None) => out.push(format!("{at}[{k}]: missing")),
                    (None, Some(av)) => out.push(format!("{at}[{k}]: unexpected {av}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            if ea.len() != aa.len() {
                out.push(format!(
                    "{at}: expected {} items, got {}",
                    ea.len(),
                    aa.len()
                ));
            }
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                diff_value(&format!("{at}[{i}]"), ev, av, ignore, out);
            }
        }
        _ if e != a => out.push(format!("{at}: expected {e}, got {a}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar entry to put in a test layer.
    enum T<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a [u8]),
        Owned(&'a str, u64, u64, &'a [u8]),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    fn layer(items: &[T]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for item in items {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match item {
                T::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
                T::File(p, mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    h.set_mtime(0);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                T::Owned(p, uid, gid, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_uid(*uid);
                    h.set_gid(*gid);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                T::Symlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                T::Hardlink(p, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Three layers: a base, one that deletes a file and replaces a directory (opaque), and
    /// one with a hardlink, a setuid file and a dangling symlink.
    fn layers() -> Vec<Vec<u8>> {
        vec![
            layer(&[
                T::Dir("./", 0o755),
                T::Dir("./etc/", 0o755),
                T::File("./etc/motd", 0o644, b"hi\n"),
                T::File("./etc/keep", 0o644, b"keep\n"),
                T::Dir("./data/", 0o755),
                T::File("./data/old", 0o600, b"old\n"),
                T::Dir("./data/sub/", 0o700),
                T::File("./data/sub/deep", 0o644, b"deep\n"),
                T::Dir("./tmp/", 0o1777),
            ]),
            layer(&[
                T::Dir("etc/", 0o755),
                T::File("etc/.wh.motd", 0o644, b""),
                T::Dir("data/", 0o755),
                T::File("data/.wh..wh..opq", 0o644, b""),
                T::File("data/new", 0o644, b"new\n"),
            ]),
            layer(&[
                T::File("bin/tool", 0o4755, b"tool"),
                T::Hardlink("bin/tool2", "bin/tool"),
                T::Symlink("bin/dangling", "/nowhere"),
                T::Owned("home/app/f", 1000, 50, b"f"),
            ]),
        ]
    }

    fn config(history: Value, n: usize) -> Value {
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "author": "",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"], "WorkingDir": "/", "OnBuild": null, "Cmd": []},
            "rootfs": {"type": "layers", "diff_ids": vec!["sha256:x"; n]},
            "history": history,
        })
    }

    fn raw() -> RawImage {
        let history = serde_json::json!([
            {"created": "2024-01-01T00:00:00Z", "comment": "Imported from -"},
            {"created_by": "ENV A=b", "comment": "buildkit.dockerfile.v0", "empty_layer": true},
            {"created_by": "RUN /bin/sh -c rm ... # buildkit", "comment": "buildkit.dockerfile.v0"},
            {"created_by": "COPY . / # buildkit", "comment": "buildkit.dockerfile.v0"},
        ]);
        RawImage {
            config: config(history, 3),
            layers: layers(),
        }
    }

    fn fs_paths(f: &Facts) -> Vec<&str> {
        f.filesystem.iter().map(|e| e.entry.path.as_str()).collect()
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize("./"), "/");
        assert_eq!(normalize("."), "/");
        assert_eq!(normalize("./etc/"), "/etc");
        assert_eq!(normalize("etc//passwd"), "/etc/passwd");
        assert_eq!(normalize("/a/./b/../c"), "/a/c");
        assert_eq!(parent("/etc/passwd"), "/etc");
        assert_eq!(parent("/etc"), "/");
    }

    #[test]
    fn layer_entries_keep_whiteouts_and_modes() {
        let entries = read_layer(&layers()[1]).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc",
                "/etc/.wh.motd",
                "/data",
                "/data/.wh..wh..opq",
                "/data/new"
            ]
        );
        assert!(entries[1].is_whiteout() && entries[3].is_whiteout());
        let third = read_layer(&layers()[2]).unwrap();
        assert_eq!(third[0].mode, 0o4755);
        assert_eq!(third[0].sha256.as_deref(), Some(sha(b"tool").as_str()));
        assert_eq!(third[1].kind, Kind::Hardlink);
        assert_eq!(third[1].link.as_deref(), Some("/bin/tool"));
        assert_eq!(third[2].link.as_deref(), Some("/nowhere"));
        assert_eq!((third[3].uid, third[3].gid), (1000, 50));
    }

    #[test]
    fn merged_filesystem_honours_whiteouts_opaque_dirs_and_hardlinks() {
        let f = facts(&raw(), &Options::default()).unwrap();
        assert_eq!(
            fs_paths(&f),
            [
                "/",
                "/bin/dangling",
                "/bin/tool",
                "/bin/tool2",
                "/data",
                "/data/new",
                "/etc",
                "/etc/keep",
                "/home/app/f",
                "/tmp",
            ]
        );
        let tool2 = &f.filesystem[3];
        assert_eq!(tool2.entry.kind, Kind::File);
        assert_eq!(tool2.entry.mode, 0o4755);
        assert_eq!(tool2.hardlinks, ["/bin/tool"]);
        assert_eq!(f.filesystem[2].hardlinks, ["/bin/tool2"]);
        let tmp = f.filesystem.last().unwrap();
        assert_eq!(tmp.entry.mode, 0o1777);
        assert_eq!(f.layers.len(), 3);
        assert_eq!(f.history.len(), 4);
        assert!(f.removed.is_empty());
        assert_eq!(f.author, None);
        // null members go, empty arrays stay.
        assert_eq!(
            f.config,
            serde_json::json!({"Cmd": [], "Env": ["PATH=/bin"], "WorkingDir": "/"})
        );
    }

    #[test]
    fn skip_base_drops_base_history_layers_and_paths() {
        let opts = Options {
            skip_base: 1,
            reference: None,
        };
        let f = facts(&raw(), &opts).unwrap();
        assert_eq!(f.skipped_layers, 1);
        assert_eq!(f.history.len(), 3);
        assert_eq!(f.history[0].created_by.as_deref(), Some("ENV A=b"));
        assert_eq!(f.layers.len(), 2);
        assert_eq!(
            f.layers[0].created_by.as_deref(),
            Some("RUN /bin/sh -c rm ... # buildkit")
        );
        assert_eq!(
            f.removed,
            ["/data/old", "/data/sub", "/data/sub/deep", "/etc/motd"]
        );
        assert!(!fs_paths(&f).contains(&"/etc/keep"));
        assert!(fs_paths(&f).contains(&"/data/new"));
        let v = f.to_value();
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["layers"][0]["entries"][1]["path"], "/data/.wh..wh..opq");
        assert_eq!(v["filesystem"][2]["mode"], "4755");
        assert!(v["filesystem"][2].get("mtime").is_some());
    }

    #[test]
    fn base_history_len_needs_the_whole_base_history_as_a_prefix() {
        let image = raw();
        let mut base = raw();
        base.config["history"] = serde_json::json!([image.config["history"][0].clone()]);
        assert_eq!(base_history_len(&image, &base), 1);
        base.config["history"][0]["created"] = "2025-01-01T00:00:00Z".into();
        assert_eq!(base_history_len(&image, &base), 0);
        base.config["history"] = serde_json::json!([]);
        assert_eq!(base_history_len(&image, &base), 0);
    }

    #[test]
    fn compare_reports_differences_by_path_and_checks_derived_subsets() {
        let f = facts(&raw(), &Options::default()).unwrap().to_value();
        assert!(compare(&f, &f, &[]).is_empty());
        let mut other = f.clone();
        other["config"]["WorkingDir"] = "/x".into();
        other["filesystem"][1]["mode"] = "0700".into();
        let diffs = compare(&f, &other, &[]);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].starts_with("config.WorkingDir"), "{diffs:?}");
        assert!(
            diffs[1].starts_with("filesystem[/bin/dangling].mode"),
            "{diffs:?}"
        );
        assert!(compare(&f, &other, &["mode", "WorkingDir"]).is_empty());

        let derived = serde_json::json!({
            "derived": true,
            "config": f["config"].clone(),
            "layer_count": 3,
            "filesystem_includes": [{"path": "/bin/tool", "mode": "4755", "content": "tool"}],
            "filesystem_excludes": ["/etc/motd"],
        });
        assert!(compare(&derived, &f, &[]).is_empty());
        let mut wrong = derived.clone();
        wrong["filesystem_excludes"] = serde_json::json!(["/etc/keep"]);
        wrong["layer_count"] = 2.into();
        assert_eq!(compare(&wrong, &f, &[]).len(), 2);
    }

    #[test]
    fn stage_context_fixes_modes_and_mtimes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "f").unwrap();
        std::fs::write(src.join("x"), "x").unwrap();
        std::fs::set_permissions(src.join("x"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o664))
            .unwrap();
        std::os::unix::fs::symlink("nowhere", src.join("link")).unwrap();
        stage_context(&src, &dst).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(meta("x").mode() & 0o7777, 0o755);
        assert_eq!(meta("sub/f").mode() & 0o7777, 0o644);
        assert_eq!(meta("sub").mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("nowhere")
        );
        for p in ["x", "sub", "sub/f", "link"] {
            assert_eq!(meta(p).mtime() as u64, CONTEXT_MTIME, "{p}");
        }
    }

    /// Every case has a Dockerfile and exactly one expectation, and the expectations are facts.
    #[test]
    fn the_reference_corpus_is_complete() {
        let root = crate::repo_root().join("tests/reference");
        let mut cases = 0;
        for entry in std::fs::read_dir(root.join("cases")).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(dir.join("Dockerfile").is_file(), "{name}: no Dockerfile");
            let case: Value =
                serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap())
                    .unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
            assert!(
                case["covers"].is_string(),
                "{name}: case.json says nothing it covers"
            );
            let ok = root.join(format!("expected/{name}.json"));
            let err = root.join(format!("expected/{name}.error.json"));
            assert!(
                ok.is_file() != err.is_file(),
                "{name}: needs one expectation"
            );
            let expect_error = case["expect"].as_str() == Some("error");
            assert_eq!(
                err.is_file(),
                expect_error,
                "{name}: expect vs recorded outcome"
            );
            let path = if ok.is_file() { ok } else { err };
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if expect_error {
                assert!(
                    v["error"].is_string() && v["exit_status"].is_u64(),
                    "{name}"
                );
            } else {
                assert_eq!(v["format"], FORMAT, "{name}");
                assert_eq!(
                    v["derived"].as_bool() == Some(true),
                    case["derived"] == true
                );
                assert!(v["config"].is_object(), "{name}");
                assert!(compare(&v, &v, &[]).is_empty() || v["derived"] == true);
            }
            cases += 1;
        }
        assert!(cases >= 45, "only {cases} cases");
    }

    #[test]
    fn a_file_replacing_a_directory_hides_its_children() {
        let l2 = layer(&[T::File("data", 0o644, b"now a file")]);
        let mut r = raw();
        r.layers = vec![layers().remove(0), l2];
        r.config = config(Value::Array(vec![]), 2);
        let f = facts(&r, &Options::default()).unwrap();
        assert!(!fs_paths(&f).iter().any(|p| p.starts_with("/data/")));
        assert_eq!(
            f.filesystem
                .iter()
                .find(|e| e.entry.path == "/data")
                .unwrap()
                .entry
                .kind,
            Kind::File
        );
    }

    #[test]
    fn reads_docker_archive_and_oci_layouts_alike() {
        let dir = tempfile::tempdir().unwrap();
        let r = raw();
        let config_bytes = serde_json::to_vec(&r.config).unwrap();

        // docker-archive: uncompressed layers.
        let mut b = tar::Builder::new(Vec::new());
        let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&mut b, "cfg.json", &config_bytes);
        for (i, l) in r.layers.iter().enumerate() {
            add(&mut b, &format!("l{i}/layer.tar"), l);
        }
        let manifest = serde_json::json!([{"Config": "cfg.json", "RepoTags": ["t:1"],
            "Layers": ["l0/layer.tar", "l1/layer.tar", "l2/layer.tar"]}]);
        add(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        let docker_tar = dir.path().join("docker.tar");
        std::fs::write(&docker_tar, b.into_inner().unwrap()).unwrap();

        // OCI layout directory: gzip, zstd and plain layers.
        let oci = dir.path().join("oci");
        let blobs = oci.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let d = sha(data);
            std::fs::write(blobs.join(&d), data).unwrap();
            serde_json::json!({"mediaType": "x", "digest": format!("sha256:{d}"), "size": data.len()})
        };
        let layer_descs = vec![
            put(&gzip(&r.layers[0])),
            put(&zstd::stream::encode_all(r.layers[1].as_slice(), 3).unwrap()),
            put(&r.layers[2]),
        ];
        let manifest = serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": put(&config_bytes), "layers": layer_descs});
        let mut mdesc = put(&serde_json::to_vec(&manifest).unwrap());
        mdesc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        mdesc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "1"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [mdesc]});
        std::fs::write(oci.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        std::fs::write(oci.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

        // The same layout as a tar.
        let oci_tar = dir.path().join("oci.tar");
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", &oci).unwrap();
        std::fs::write(&oci_tar, b.into_inner().unwrap()).unwrap();

        let opts = Options {
            skip_base: 1,
            reference: None,
        };
        let a = image_facts(&docker_tar, &opts).unwrap();
        let b = image_facts(&oci, &opts).unwrap();
        let c = image_facts(&oci_tar, &opts).unwrap();
        assert_eq!(a.to_json_string(), b.to_json_string());
        assert_eq!(a.to_json_string(), c.to_json_string());
        let named = Options {
            skip_base: 0,
            reference: Some("t:1".into()),
        };
        assert!(image_facts(&docker_tar, &named).is_ok());
        assert!(image_facts(&oci, &named).is_ok());
        // The printed text parses back to the same value.
        let text = a.to_json_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, a.to_value());
    }
}
