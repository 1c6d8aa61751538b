//! SLSA provenance, as BuildKit attaches it (`docs/attestations/slsa-provenance.md`,
//! `slsa-definitions.md`, `solver/llbsolver/provenance`).
//!
//! One in-toto statement per platform image: its subject is the image manifest, its predicate
//! says how the image was built. The predicate follows BuildKit's field for field, in SLSA
//! provenance v1 (`https://slsa.dev/provenance/v1`, BuildKit's default since v0.28) or v0.2
//! (`version=v0.2`, the default of BuildKit v0.11 to v0.27):
//!
//! | field | `mode=min` | `mode=max` |
//! |---|---|---|
//! | build type, builder id, invocation id, start and finish times | yes | yes |
//! | frontend (`dockerfile.v0`), Dockerfile path, local sources (`context`, `dockerfile`) | yes | yes |
//! | `target`, `no-cache` | yes | yes |
//! | build arguments (`build-arg:NAME`) and labels (`label:NAME`), with their values | no (`completeness.request` is then false) | yes |
//! | secret and ssh ids used (never their values) | no | yes |
//! | the Dockerfile's text (`buildkit_metadata.source`) | no | yes |
//! | resolved dependencies: base images (package URLs with the platform, and the digest resolved), `ADD <url>` downloads, the git commit of a git context | yes | yes |
//! | `hermetic`: no step had network access and every dependency is known | yes | yes |
//!
//! Not produced, where BuildKit has them: the LLB definition (`buildConfig`) and the layer
//! mapping of `mode=max` (Kiln has no LLB), resource usage, `dockerfileVersion`.

pub mod purl;

use std::collections::BTreeMap;

use serde::Serialize;

/// BuildKit's build type URIs: the predicate's fields mean what BuildKit's definitions say.
pub const BUILD_TYPE_V1: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
pub const BUILD_TYPE_V02: &str = "https://mobyproject.org/buildkit@v1";
pub const PREDICATE_V1: &str = "https://slsa.dev/provenance/v1";
pub const PREDICATE_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// How much provenance to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Min,
    /// BuildKit's default when provenance is asked for without a mode.
    #[default]
    Max,
}

/// The SLSA provenance version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    V1,
    V02,
}

/// `--provenance` / `--attest type=provenance,...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub mode: Mode,
    pub version: Version,
    /// `builder-id=`: `runDetails.builder.id` (v1) or `builder.id` (v0.2).
    pub builder_id: String,
    /// `reproducible=true`.
    pub reproducible: bool,
}

impl Options {
    /// The attributes of `--attest type=provenance,ATTRS` (without `type=`), or BuildKit's
    /// `attest:provenance` value: `mode=min|max`, `version=v1|v0.2`, `builder-id=ID`,
    /// `reproducible=true|false`. `Ok(None)` for `disabled=true`.
    pub fn parse(attrs: &str) -> Result<Option<Options>, String> {
        let mut o = Options::default();
        for field in attrs.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            match k.to_ascii_lowercase().as_str() {
                "mode" => {
                    o.mode = match v {
                        "min" => Mode::Min,
                        "max" | "full" => Mode::Max,
                        _ => return Err(format!("provenance mode {v:?}: use min or max")),
                    }
                }
                "version" => {
                    o.version = match v {
                        "v1" => Version::V1,
                        "v0.2" => Version::V02,
                        _ => return Err(format!("provenance version {v:?}: use v1 or v0.2")),
                    }
                }
                "builder-id" => o.builder_id = v.to_string(),
                "reproducible" => {
                    o.reproducible = crate::dockerfile::directives::parse_go_bool(v)
                        .ok_or_else(|| format!("reproducible={v:?}: expected true or false"))?;
                }
                "disabled" => {
                    if crate::dockerfile::directives::parse_go_bool(v)
                        .ok_or_else(|| format!("disabled={v:?}: expected true or false"))?
                    {
                        return Ok(None);
                    }
                }
                // buildx's own: where the provenance goes for local outputs, and whether it goes
                // in the image only. Kiln writes it to both, like BuildKit's defaults.
                "filename" | "inline-only" => {}
                other => {
                    return Err(format!(
                        "unknown provenance option {other:?} (mode, version, builder-id, reproducible, disabled)"
                    ));
                }
            }
        }
        Ok(Some(o))
    }

    /// `--provenance VALUE`, as buildx reads it: a boolean turns provenance on (BuildKit's
    /// defaults: `mode=max`, SLSA v1) or off; anything else is the attributes.
    pub fn parse_flag(value: &str) -> Result<Option<Options>, String> {
        match crate::dockerfile::directives::parse_go_bool(value) {
            Some(true) => Ok(Some(Options::default())),
            Some(false) => Ok(None),
            None => Options::parse(value),
        }
    }

    /// `--provenance`, `--attest` and `--sbom`, as buildx reads them: `--provenance V` is
    /// `--attest type=provenance,V` (a boolean turns it on, with BuildKit's defaults, or off),
    /// and it wins over an `--attest type=provenance`. An SBOM is refused, saying so, unless it
    /// is turned off.
    pub fn from_flags(
        provenance: Option<&str>,
        attest: &[String],
        sbom: Option<&str>,
    ) -> Result<Option<Options>, String> {
        use crate::dockerfile::directives::parse_go_bool;
        const NO_SBOM: &str = "SBOM attestations are not supported yet (Kiln attaches provenance only: --provenance or --attest type=provenance)";
        if let Some(v) = sbom
            && parse_go_bool(v) != Some(false)
        {
            return Err(format!("--sbom {v}: {NO_SBOM}"));
        }
        let mut out = None;
        for a in attest {
            let mut kind = None;
            let mut rest = vec![];
            for field in a.split(',') {
                match field.split_once('=') {
                    Some((k, t)) if k.trim().eq_ignore_ascii_case("type") => {
                        kind = Some(t.to_ascii_lowercase())
                    }
                    _ => rest.push(field),
                }
            }
            match kind.as_deref() {
                Some("provenance") => {
                    out = Options::parse(&rest.join(","))
                        .map_err(|e| format!("--attest {a}: {e}"))?;
                }
                Some("sbom") => {
                    let off = rest.iter().any(|f| {
                        f.split_once('=')
                            .is_some_and(|(k, v)| k == "disabled" && parse_go_bool(v) == Some(true))
                    });
                    if !off {
                        return Err(format!("--attest {a}: {NO_SBOM}"));
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "--attest {a}: unknown attestation type {other:?} (provenance)"
                    ));
                }
                None => return Err(format!("--attest {a}: type= is required (type=provenance)")),
            }
        }
        if let Some(v) = provenance {
            out = Options::parse_flag(v).map_err(|e| format!("--provenance {v}: {e}"))?;
        }
        Ok(out)
    }

    pub fn predicate_type(&self) -> &'static str {
        match self.version {
            Version::V1 => PREDICATE_V1,
            Version::V02 => PREDICATE_V02,
        }
    }
}

/// A resolved dependency: a package URL or a URL, and the digests of what was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Material {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

impl Material {
    pub fn new(uri: String, digest: &crate::digest::Digest) -> Material {
        let (alg, hex) = digest
            .as_str()
            .split_once(':')
            .unwrap_or(("sha256", digest.as_str()));
        Material {
            uri,
            digest: BTreeMap::from([(alg.to_string(), hex.to_string())]),
        }
    }

    /// A git commit: `sha1`, or `sha256` for a 64-digit object name.
    pub fn git(url: &str, commit: &str) -> Material {
        let alg = if commit.len() == 64 { "sha256" } else { "sha1" };
        Material {
            uri: url.to_string(),
            digest: BTreeMap::from([(alg.to_string(), commit.to_string())]),
        }
    }
}

/// A secret or ssh id the build used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Used {
    pub id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// What the predicate is made from: the build's request and what it resolved.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The frontend's arguments as BuildKit names them: `build-arg:NAME`, `label:NAME`,
    /// `target`, `no-cache`.
    pub args: BTreeMap<String, String>,
    /// The Dockerfile, as the user named it (`configSource.path`).
    pub dockerfile: String,
    /// The Dockerfile's text, for `mode=max`.
    pub dockerfile_text: String,
    /// Local sources (`context`, `dockerfile`): a local context makes the dependencies
    /// incomplete, since its files are not named by any digest.
    pub locals: Vec<String>,
    /// A git context: its URL and the commit built (`configSource.uri` and `digest`).
    pub git: Option<(String, String)>,
    pub secrets: Vec<Used>,
    pub ssh: Vec<Used>,
    pub materials: Vec<Material>,
    /// Whether a RUN step had network access.
    pub network: bool,
    /// This machine's platform.
    pub builder_platform: String,
    pub invocation_id: String,
    /// RFC 3339.
    pub started_on: String,
    pub finished_on: String,
}

#[derive(Serialize, Default)]
struct ConfigSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    uri: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
}

#[derive(Serialize)]
struct Local {
    name: String,
}

#[derive(Serialize)]
struct Request {
    frontend: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<Used>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh: Vec<Used>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    locals: Vec<Local>,
}

#[derive(Serialize, Default)]
struct SourceInfo {
    filename: String,
    language: &'static str,
    /// Go's `[]byte`: base64.
    data: String,
}

#[derive(Serialize, Default)]
struct Source {
    infos: Vec<SourceInfo>,
}

#[derive(Serialize, Default)]
struct BuildkitMetadata {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    vcs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
}

#[derive(Serialize)]
struct Completeness {
    request: bool,
    #[serde(rename = "resolvedDependencies")]
    resolved_dependencies: bool,
}

/// The parts both versions are made of.
struct Parts {
    config_source: ConfigSource,
    request: Request,
    metadata: BuildkitMetadata,
    completeness: Completeness,
    hermetic: bool,
}

fn parts(opts: &Options, inputs: &Inputs) -> Parts {
    use base64::Engine as _;
    let mut args = inputs.args.clone();
    let mut request_complete = true;
    if opts.mode == Mode::Min {
        let before = args.len();
        args.retain(|k, _| !k.starts_with("build-arg:") && !k.starts_with("label:"));
        request_complete = args.len() == before;
    }
    let config_source = match &inputs.git {
        Some((url, commit)) => ConfigSource {
            uri: url.clone(),
            digest: Material::git(url, commit).digest,
            path: inputs.dockerfile.clone(),
        },
        None => ConfigSource {
            path: inputs.dockerfile.clone(),
            ..ConfigSource::default()
        },
    };
    let max = opts.mode == Mode::Max;
    let request = Request {
        frontend: "dockerfile.v0",
        args,
        secrets: if max { inputs.secrets.clone() } else { vec![] },
        ssh: if max { inputs.ssh.clone() } else { vec![] },
        locals: inputs
            .locals
            .iter()
            .map(|n| Local { name: n.clone() })
            .collect(),
    };
    let metadata = BuildkitMetadata {
        vcs: BTreeMap::new(),
        source: max.then(|| Source {
            infos: vec![SourceInfo {
                filename: inputs.dockerfile.clone(),
                language: "Dockerfile",
                data: base64::engine::general_purpose::STANDARD.encode(&inputs.dockerfile_text),
            }],
        }),
    };
    let resolved = inputs.locals.is_empty();
    Parts {
        config_source,
        request,
        metadata,
        completeness: Completeness {
            request: request_complete,
            resolved_dependencies: resolved,
        },
        hermetic: resolved && !inputs.network,
    }
}

/// The predicate, in the version the options ask for.
pub fn predicate(opts: &Options, inputs: &Inputs) -> serde_json::Value {
    serde_json::to_value(typed(opts, inputs)).unwrap_or(serde_json::Value::Null)
}

/// Either version's predicate, serialising its fields in BuildKit's order.
#[derive(Serialize)]
#[serde(untagged)]
enum Predicate {
    V1(PredicateV1),
    V02(PredicateV02),
}

fn typed(opts: &Options, inputs: &Inputs) -> Predicate {
    let p = parts(opts, inputs);
    match opts.version {
        Version::V1 => Predicate::V1(PredicateV1 {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE_V1,
                external_parameters: External {
                    config_source: p.config_source,
                    request: p.request,
                },
                internal_parameters: Internal {
                    builder_platform: inputs.builder_platform.clone(),
                },
                resolved_dependencies: inputs.materials.clone(),
            },
            run_details: RunDetails {
                builder: Builder {
                    id: opts.builder_id.clone(),
                    version: BTreeMap::from([("kiln", env!("CARGO_PKG_VERSION"))]),
                },
                metadata: MetadataV1 {
                    invocation_id: inputs.invocation_id.clone(),
                    started_on: inputs.started_on.clone(),
                    finished_on: inputs.finished_on.clone(),
                    buildkit_metadata: p.metadata,
                    hermetic: p.hermetic,
                    completeness: p.completeness,
                    reproducible: opts.reproducible,
                },
            },
        }),
        Version::V02 => Predicate::V02(PredicateV02 {
            builder: BuilderV02 {
                id: opts.builder_id.clone(),
            },
            build_type: BUILD_TYPE_V02,
            materials: inputs.materials.clone(),
            invocation: Invocation {
                config_source: ConfigSourceV02 {
                    uri: p.config_source.uri,
                    digest: p.config_source.digest,
                    entry_point: p.config_source.path,
                },
                parameters: p.request,
                environment: Environment {
                    platform: inputs.builder_platform.clone(),
                },
            },
            metadata: MetadataV02 {
                build_invocation_id: inputs.invocation_id.clone(),
                build_started_on: inputs.started_on.clone(),
                build_finished_on: inputs.finished_on.clone(),
                completeness: CompletenessV02 {
                    parameters: p.completeness.request,
                    environment: true,
                    materials: p.completeness.resolved_dependencies,
                },
                reproducible: opts.reproducible,
                buildkit_metadata: p.metadata,
                hermetic: p.hermetic,
            },
        }),
    }
}

/// A subject of a statement: a name and the digest of the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: &'static str,
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    subject: Vec<Subject>,
    predicate: Predicate,
}

/// The in-toto statement of an image's provenance, as the bytes of its blob (compact JSON,
/// the fields in the order BuildKit writes them).
pub fn statement(opts: &Options, subjects: Vec<Subject>, inputs: &Inputs) -> Vec<u8> {
    serde_json::to_vec(&Statement {
        kind: STATEMENT_TYPE,
        predicate_type: opts.predicate_type(),
        subject: subjects,
        predicate: typed(opts, inputs),
    })
    .expect("a statement serialises")
}

/// The statement's subjects: each image name as a package URL with the platform (BuildKit's
/// default subjects), or `_` when the image has no name; the digest is the manifest's.
pub fn subjects(
    names: &[String],
    platform: &crate::image::oci::Platform,
    manifest: &crate::digest::Digest,
) -> Vec<Subject> {
    let digest = Material::new(String::new(), manifest).digest;
    let mut out: Vec<Subject> = names
        .iter()
        .filter_map(|n| purl::image(n, Some(platform), false))
        .map(|name| Subject {
            name,
            digest: digest.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push(Subject {
            name: "_".into(),
            digest,
        });
    }
    out
}

/// A fresh invocation id: 25 base-36 digits of 128 random bits, as BuildKit's
/// `identity.NewID`. Falls back to the time and process id when no randomness can be read.
pub fn invocation_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    let mut n = if random {
        u128::from_le_bytes(bytes)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() ^ (u128::from(std::process::id()) << 96)
    };
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(25);
    for _ in 0..25 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[derive(Serialize)]
struct PredicateV1 {
    #[serde(rename = "buildDefinition")]
    build_definition: BuildDefinition,
    #[serde(rename = "runDetails")]
    run_details: RunDetails,
}

#[derive(Serialize)]
struct BuildDefinition {
    #[serde(rename = "buildType")]
    build_type: &'static str,
    #[serde(rename = "externalParameters")]
    external_parameters: External,
    #[serde(rename = "internalParameters")]
    internal_parameters: Internal,
    #[serde(rename = "resolvedDependencies", skip_serializing_if = "Vec::is_empty")]
    resolved_dependencies: Vec<Material>,
}

#[derive(Serialize)]
struct External {
    #[serde(rename = "configSource")]
    config_source: ConfigSource,
    request: Request,
}

#[derive(Serialize)]
struct Internal {
    #[serde(rename = "builderPlatform")]
    builder_platform: String,
}

#[derive(Serialize)]
struct RunDetails {
    builder: Builder,
    metadata: MetadataV1,
}

#[derive(Serialize)]
struct Builder {
    id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    version: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct MetadataV1 {
    #[serde(rename = "invocationId")]
    invocation_id: String,
    #[serde(rename = "startedOn")]
    started_on: String,
    #[serde(rename = "finishedOn")]
    finished_on: String,
    buildkit_metadata: BuildkitMetadata,
    #[serde(
        rename = "buildkit_hermetic",
        skip_serializing_if = "std::ops::Not::not"
    )]
    hermetic: bool,
    #[serde(rename = "buildkit_completeness")]
    completeness: Completeness,
    #[serde(
        rename = "buildkit_reproducible",
        skip_serializing_if = "std::ops::Not::not"
    )]
    reproducible: bool,
}

#[derive(Serialize)]
struct PredicateV02 {
    builder: BuilderV02,
    #[serde(rename = "buildType")]
    build_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    materials: Vec<Material>,
    invocation: Invocation,
    metadata: MetadataV02,
}

#[derive(Serialize)]
struct BuilderV02 {
    id: String,
}

#[derive(Serialize)]
struct Invocation {
    #[serde(rename = "configSource")]
    config_source: ConfigSourceV02,
    parameters: Request,
    environment: Environment,
}

#[derive(Serialize)]
struct ConfigSourceV02 {
    #[serde(skip_serializing_if = "String::is_empty")]
    uri: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    digest: BTreeMap<String, String>,
    #[serde(rename = "entryPoint", skip_serializing_if = "String::is_empty")]
    entry_point: String,
}

#[derive(Serialize)]
struct Environment {
    platform: String,
}

#[derive(Serialize)]
struct MetadataV02 {
    #[serde(rename = "buildInvocationID")]
    build_invocation_id: String,
    #[serde(rename = "buildStartedOn")]
    build_started_on: String,
    #[serde(rename = "buildFinishedOn")]
    build_finished_on: String,
    completeness: CompletenessV02,
    reproducible: bool,
    #[serde(rename = "https://mobyproject.org/buildkit@v1#metadata")]
    buildkit_metadata: BuildkitMetadata,
    #[serde(
        rename = "https://mobyproject.org/buildkit@v1#hermetic",
        skip_serializing_if = "std::ops::Not::not"
    )]
    hermetic: bool,
}

#[derive(Serialize)]
struct CompletenessV02 {
    parameters: bool,
    environment: bool,
    materials: bool,
}

#[cfg(test)]
mod tests;
