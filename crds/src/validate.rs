//! Validation of an `ImageBuildSpec`, beyond what the CRD schema can check.
//!
//! The operator calls [`validate`] before it plans a build. It covers every rule of the schema
//! and of its CEL rules (which Kubernetes before 1.25 ignores), and adds what neither can say:
//! image references parsed by the distribution grammar, quantities and durations parsed,
//! object names checked as DNS subdomains, ids unique. It reports every problem at once, each
//! with the path of the field, so that one status update tells the user everything to fix.

use std::collections::BTreeSet;
use std::fmt;

use crate::reference::{self, Reference};
use crate::types::*;
use crate::{duration, quantity};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, as `kubectl explain` spells it: `spec.secrets[1].id`.
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Join several errors into the one-line message a status condition carries.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The largest total size of inline files. etcd refuses objects above 1.5 MiB, and the build pod
/// receives inline files through a ConfigMap-sized channel.
pub const INLINE_MAX_BYTES: usize = 1024 * 1024;

/// Check a spec. `Ok` means the operator may plan it.
pub fn validate(spec: &ImageBuildSpec) -> Result<(), Vec<FieldError>> {
    let mut v = Validator::default();
    v.source(&spec.source);
    v.relative_path("spec.dockerfile", &spec.dockerfile, false);
    if let Some(inline) = &spec.source.inline
        && !inline.files.contains_key(&spec.dockerfile)
    {
        v.push(
            "spec.source.inline.files",
            format!(
                "has no file {:?}, which spec.dockerfile names",
                spec.dockerfile
            ),
        );
    }
    if let Some(target) = &spec.target
        && !target.is_empty()
        && !is_stage_name(target)
    {
        v.push(
            "spec.target",
            format!("{target:?} is not a stage name: stage names start with a letter and hold letters, digits, '-', '_' and '.'"),
        );
    }
    v.unique(
        "spec.buildArgs",
        "name",
        spec.build_args.iter().map(|a| a.name.as_str()),
    );
    for (i, arg) in spec.build_args.iter().enumerate() {
        if arg.name.is_empty() || arg.name.contains('=') || arg.name.contains(char::is_whitespace) {
            v.push(
                format!("spec.buildArgs[{i}].name"),
                format!(
                    "{:?} is not an ARG name: it must be non-empty, without '=' or spaces",
                    arg.name
                ),
            );
        }
    }
    v.output(&spec.output);
    for (i, r) in spec.pull_secret_refs.iter().enumerate() {
        v.dns_subdomain(&format!("spec.pullSecretRefs[{i}].name"), &r.name);
    }
    v.unique(
        "spec.secrets",
        "id",
        spec.secrets.iter().map(|s| s.id.as_str()),
    );
    for (i, s) in spec.secrets.iter().enumerate() {
        v.id(&format!("spec.secrets[{i}].id"), &s.id);
        v.secret_key_ref(&format!("spec.secrets[{i}].secretRef"), &s.secret_ref);
    }
    v.unique("spec.ssh", "id", spec.ssh.iter().map(|s| s.id.as_str()));
    for (i, s) in spec.ssh.iter().enumerate() {
        v.id(&format!("spec.ssh[{i}].id"), &s.id);
        v.secret_key_ref(&format!("spec.ssh[{i}].secretRef"), &s.secret_ref);
    }
    if let Some(cache) = &spec.cache {
        v.cache(cache);
    }
    match duration::parse(&spec.timeout) {
        Ok(d) if d.is_zero() => v.push("spec.timeout", "must be longer than zero".to_string()),
        Ok(_) => {}
        Err(e) => v.push("spec.timeout", e.to_string()),
    }
    if let Some(limit) = spec.backoff_limit
        && !(0..=10).contains(&limit)
    {
        v.push(
            "spec.backoffLimit",
            format!("{limit} is out of range: use 0 to 10"),
        );
    }
    if let Some(resources) = &spec.resources {
        for (kind, list) in [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ] {
            for (name, q) in list.iter().flatten() {
                v.quantity(&format!("spec.resources.{kind}.{name}"), &q.0);
            }
        }
    }
    for key in spec.node_selector.keys() {
        if !is_qualified_name(key) {
            v.push(
                format!("spec.nodeSelector[{key}]"),
                "is not a valid label key".to_string(),
            );
        }
    }
    if let Some(sa) = &spec.service_account_name {
        v.dns_subdomain("spec.serviceAccountName", sa);
    }
    v.finish()
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn push(&mut self, path: impl Into<String>, message: String) {
        self.errors.push(FieldError {
            path: path.into(),
            message,
        });
    }

    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    fn source(&mut self, source: &BuildSource) {
        let set = [
            source.git.is_some(),
            source.config_map.is_some(),
            source.inline.is_some(),
            source.url.is_some(),
            source.pvc.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if set != 1 {
            self.push(
                "spec.source",
                format!(
                    "exactly one of git, configMap, inline, url or pvc must be set, found {set}"
                ),
            );
        }
        if let Some(git) = &source.git {
            if !is_git_url(&git.url) {
                self.push(
                    "spec.source.git.url",
                    format!(
                        "{:?} is not an https, http, ssh or git URL, nor user@host:path",
                        git.url
                    ),
                );
            }
            if let Some(rev) = &git.revision
                && (rev.contains(char::is_whitespace) || rev.starts_with('-') || rev.contains(".."))
            {
                self.push(
                    "spec.source.git.revision",
                    format!("{rev:?} is not a branch, tag or commit"),
                );
            }
            if let Some(sub) = &git.sub_path {
                self.relative_path("spec.source.git.subPath", sub, true);
            }
            if let Some(r) = &git.secret_ref {
                self.dns_subdomain("spec.source.git.secretRef.name", &r.name);
            }
        }
        if let Some(cm) = &source.config_map {
            self.dns_subdomain("spec.source.configMap.name", &cm.name);
        }
        if let Some(inline) = &source.inline {
            if inline.files.is_empty() {
                self.push(
                    "spec.source.inline.files",
                    "must hold at least one file".to_string(),
                );
            }
            let mut total = 0;
            for (path, content) in &inline.files {
                self.relative_path(&format!("spec.source.inline.files[{path}]"), path, false);
                total += path.len() + content.len();
            }
            if total > INLINE_MAX_BYTES {
                self.push(
                    "spec.source.inline.files",
                    format!("hold {total} bytes, more than the {INLINE_MAX_BYTES} allowed; use a git, url or pvc source"),
                );
            }
        }
        if let Some(url) = &source.url {
            let scheme_ok = url.url.starts_with("https://") || url.url.starts_with("http://");
            let host_ok = url
                .url
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
            if !scheme_ok || !host_ok || url.url.contains(char::is_whitespace) {
                self.push(
                    "spec.source.url.url",
                    format!("{:?} is not an http(s) URL with a host", url.url),
                );
            }
            if let Some(sha) = &url.sha256
                && !(sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            {
                self.push(
                    "spec.source.url.sha256",
                    "must be 64 lower-case hex digits".to_string(),
                );
            }
        }
        if let Some(pvc) = &source.pvc {
            self.dns_subdomain("spec.source.pvc.claimName", &pvc.claim_name);
            if let Some(sub) = &pvc.sub_path {
                self.relative_path("spec.source.pvc.subPath", sub, true);
            }
        }
    }

    fn output(&mut self, output: &BuildOutput) {
        match Reference::parse(&output.image) {
            Ok(r) if r.digest.is_some() => self.push(
                "spec.output.image",
                "must not contain a digest: the digest is the build's result".to_string(),
            ),
            Ok(_) => {}
            Err(e) => self.push("spec.output.image", e.to_string()),
        }
        self.unique(
            "spec.output.additionalTags",
            "tag",
            output.additional_tags.iter().map(String::as_str),
        );
        for (i, tag) in output.additional_tags.iter().enumerate() {
            if !reference::is_tag(tag) {
                self.push(
                    format!("spec.output.additionalTags[{i}]"),
                    format!("{tag:?} is not a tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"),
                );
            }
        }
        if let Some(r) = &output.push_secret_ref {
            self.dns_subdomain("spec.output.pushSecretRef.name", &r.name);
        }
    }

    fn cache(&mut self, cache: &CacheSpec) {
        self.unique(
            "spec.cache.volumes",
            "id",
            cache.volumes.iter().map(|c| c.id.as_str()),
        );
        for (i, vol) in cache.volumes.iter().enumerate() {
            if vol.id.is_empty() {
                self.push(
                    format!("spec.cache.volumes[{i}].id"),
                    "must not be empty".to_string(),
                );
            }
            if let Some(size) = &vol.size {
                self.size(&format!("spec.cache.volumes[{i}].size"), &size.0);
            }
            if let Some(sc) = &vol.storage_class_name {
                self.dns_subdomain(&format!("spec.cache.volumes[{i}].storageClassName"), sc);
            }
        }
        if let Some(size) = &cache.default_size {
            self.size("spec.cache.defaultSize", &size.0);
        }
        if let Some(sc) = &cache.default_storage_class_name {
            self.dns_subdomain("spec.cache.defaultStorageClassName", sc);
        }
        if let Some(registry) = &cache.registry {
            match Reference::parse(&registry.reference) {
                Ok(r) if r.digest.is_some() => self.push(
                    "spec.cache.registry.ref",
                    "must not contain a digest: the cache is written to a tag".to_string(),
                ),
                Ok(_) => {}
                Err(e) => self.push("spec.cache.registry.ref", e.to_string()),
            }
        }
    }

    fn quantity(&mut self, path: &str, text: &str) -> Option<f64> {
        match quantity::parse(text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    fn size(&mut self, path: &str, text: &str) {
        if let Some(v) = self.quantity(path, text)
            && v <= 0.0
        {
            self.push(path, format!("{text:?} must be larger than zero"));
        }
    }

    fn unique<'a>(&mut self, path: &str, key: &str, items: impl Iterator<Item = &'a str>) {
        let mut seen = BTreeSet::new();
        for (i, item) in items.enumerate() {
            if !seen.insert(item) {
                self.push(
                    format!("{path}[{i}].{key}"),
                    format!("duplicate {key} {item:?}"),
                );
            }
        }
    }

    fn id(&mut self, path: &str, id: &str) {
        if id.is_empty() || id.contains(char::is_whitespace) || id.contains([',', '=']) {
            self.push(
                path,
                format!("{id:?} is not an id: it must be non-empty, without spaces, ',' or '='"),
            );
        }
    }

    fn secret_key_ref(&mut self, path: &str, r: &SecretKeyRef) {
        self.dns_subdomain(&format!("{path}.name"), &r.name);
        if let Some(key) = &r.key
            && !is_config_key(key)
        {
            self.push(
                format!("{path}.key"),
                format!("{key:?} is not a Secret key: letters, digits, '-', '_' and '.' only"),
            );
        }
    }

    fn dns_subdomain(&mut self, path: &str, name: &str) {
        if !is_dns_subdomain(name) {
            self.push(
                path,
                format!("{name:?} is not a valid object name: lower-case letters, digits, '-' and '.', at most 253, starting and ending with a letter or digit"),
            );
        }
    }

    fn relative_path(&mut self, path: &str, value: &str, allow_empty: bool) {
        if value.is_empty() {
            if !allow_empty {
                self.push(path, "must not be empty".to_string());
            }
            return;
        }
        if value.starts_with('/') || value.split('/').any(|c| c == "..") || value.contains('\0') {
            self.push(
                path,
                format!("{value:?} must be a relative path that stays inside the context"),
            );
        }
    }
}

fn is_git_url(url: &str) -> bool {
    if url.contains(char::is_whitespace) {
        return false;
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return matches!(scheme, "https" | "http" | "ssh" | "git")
            && !rest.is_empty()
            && !rest.starts_with('/');
    }
    // scp-like: user@host:path
    match url.split_once('@') {
        Some((user, rest)) => {
            !user.is_empty()
                && rest
                    .split_once(':')
                    .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty())
        }
        None => false,
    }
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
}

fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

/// BuildKit's stage names: a letter, then letters, digits, `-`, `_` and `.`.
pub fn is_stage_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Evaluate the CRD's CEL rules (`x-kubernetes-validations`) against a raw ImageBuild object,
/// client-side, with the schema's defaults applied first as the API server does.
///
/// Clusters before Kubernetes 1.25 ignore CEL rules; the operator runs them here so that every
/// cluster enforces them. [`validate`] states the same rules in Rust; this function proves the CEL
/// spelling of them.
pub fn validate_cel(object: &serde_json::Value) -> Result<(), Vec<FieldError>> {
    let crd = crate::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value);
    let Some(Ok(schema)) = schema else {
        return Err(vec![FieldError {
            path: String::new(),
            message: "the ImageBuild CRD has no schema".into(),
        }]);
    };
    kube::core::cel::Validator::new()
        .validate(&schema, object, None)
        .map_err(|errors| {
            errors
                .iter()
                .map(|e| FieldError {
                    path: e.field_path.clone(),
                    message: e.message.clone(),
                })
                .collect()
        })
}
