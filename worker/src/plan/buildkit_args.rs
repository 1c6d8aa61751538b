//! BuildKit's built-in build arguments: `--build-arg` names that configure the builder rather
//! than the Dockerfile (the Dockerfile reference, "BuildKit built-in build args", and
//! `frontend/dockerui/config.go`). No ARG needs to declare them, so they are never reported as
//! unused. Where Kiln has the feature, the argument does what a flag does:
//!
//! | argument | in Kiln |
//! |---|---|
//! | `BUILDKIT_SYNTAX` | replaces the `# syntax=` directive, checked the same way; `dockerfile.v0` names the built-in front end |
//! | `BUILDKIT_DOCKERFILE_CHECK` | replaces the `# check=` directive |
//! | `BUILDKIT_CACHE_MOUNT_NS` | `--cache-mount-ns` |
//! | `SOURCE_DATE_EPOCH` | `--source-date-epoch` (seconds only: not BuildKit's newer `context` or stage names) |
//! | `BUILDKIT_INLINE_CACHE` | a true value adds `--cache-to type=inline` (docker and buildx do this client-side) |
//! | `BUILDKIT_CONTEXT_KEEP_GIT_DIR` | a true value keeps the `.git` directory of a Git context (not of a subdirectory) |
//! | `BUILDKIT_MULTI_PLATFORM` | a true value writes an image index (and names platforms in progress) even for one platform |
//! | `BUILDKIT_ATTEST_PROVENANCE` | `--attest type=provenance,VALUE` (`mode=max`, `version=v0.2`, ...) |
//! | the others | no effect; a warning says why |
//!
//! An explicit flag wins over the argument.

use std::collections::BTreeMap;

use crate::dockerfile::directives::parse_go_bool;

/// What Kiln does with a built-in build argument it has no feature for: the reason it changes
/// nothing, said in a warning when one is passed.
const WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "BUILDKIT_SANDBOX_HOSTNAME",
        "RUN steps always get the hostname buildkitsandbox",
    ),
    ("BUILDKIT_SBOM_SCAN_CONTEXT", "no SBOM is made"),
    ("BUILDKIT_SBOM_SCAN_STAGE", "no SBOM is made"),
];

/// Built-in build arguments Kiln acts on, or that change nothing by nature
/// (`BUILDKIT_BUILD_NAME` names the build in BuildKit's history, which Kiln does not keep).
const WITH_EFFECT: &[&str] = &[
    "BUILDKIT_SYNTAX",
    "BUILDKIT_DOCKERFILE_CHECK",
    "BUILDKIT_CACHE_MOUNT_NS",
    "SOURCE_DATE_EPOCH",
    "BUILDKIT_INLINE_CACHE",
    "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
    "BUILDKIT_MULTI_PLATFORM",
    "BUILDKIT_BUILD_NAME",
];

/// `BUILDKIT_ATTEST_<TYPE>` asks for an attestation (`frontend/attestations`).
const ATTEST_PREFIX: &str = "BUILDKIT_ATTEST_";

/// Whether a build argument is one of BuildKit's built-in ones.
pub fn is_builtin(name: &str) -> bool {
    WITH_EFFECT.contains(&name)
        || WITHOUT_EFFECT.iter().any(|(n, _)| *n == name)
        || name.starts_with(ATTEST_PREFIX)
}

/// Why a built-in build argument changes nothing in Kiln, or `None` when it does something.
pub fn without_effect(name: &str) -> Option<&'static str> {
    if name == "BUILDKIT_ATTEST_PROVENANCE" {
        return None;
    }
    if name.starts_with(ATTEST_PREFIX) {
        return Some("only provenance attestations are made (no SBOM yet)");
    }
    WITHOUT_EFFECT
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

/// The built-in build arguments that change the build, read from `--build-arg`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildkitArgs {
    /// `BUILDKIT_SYNTAX`: the frontend, in place of the `# syntax=` directive.
    pub syntax: Option<String>,
    /// `BUILDKIT_DOCKERFILE_CHECK`: the checks, in place of the `# check=` directive.
    pub check: Option<String>,
    /// `BUILDKIT_CACHE_MOUNT_NS`.
    pub cache_mount_ns: Option<String>,
    /// `SOURCE_DATE_EPOCH`, in seconds.
    pub source_date_epoch: Option<i64>,
    /// `BUILDKIT_INLINE_CACHE` with a true value (Go's `strconv.ParseBool`; other values count
    /// as false, as in buildx).
    pub inline_cache: bool,
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR` with a true value (`strconv.ParseBool`, as BuildKit's
    /// `dockerui` reads it).
    pub keep_git_dir: bool,
    /// `BUILDKIT_MULTI_PLATFORM` with a true value: an image index even for one platform.
    pub multi_platform: bool,
    /// `BUILDKIT_ATTEST_PROVENANCE`: the provenance attributes, as `attest:provenance`.
    pub attest_provenance: Option<String>,
}

impl BuildkitArgs {
    /// Read them from the build arguments. Fails on a `SOURCE_DATE_EPOCH` that is not a number.
    pub fn from_build_args(args: &BTreeMap<String, String>) -> Result<BuildkitArgs, String> {
        let get = |k: &str| args.get(k).cloned();
        let source_date_epoch = match args.get("SOURCE_DATE_EPOCH").map(|v| v.trim()) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| {
                format!(
                    "build argument SOURCE_DATE_EPOCH={v:?}: expected seconds since the epoch \
                     (Kiln does not take BuildKit's `context` or stage names)"
                )
            })?),
        };
        Ok(BuildkitArgs {
            syntax: get("BUILDKIT_SYNTAX"),
            check: get("BUILDKIT_DOCKERFILE_CHECK"),
            cache_mount_ns: get("BUILDKIT_CACHE_MOUNT_NS"),
            source_date_epoch,
            inline_cache: args
                .get("BUILDKIT_INLINE_CACHE")
                .and_then(|v| parse_go_bool(v))
                .unwrap_or(false),
            keep_git_dir: args
                .get("BUILDKIT_CONTEXT_KEEP_GIT_DIR")
                .and_then(|v| parse_go_bool(v))
                .unwrap_or(false),
            multi_platform: args
                .get("BUILDKIT_MULTI_PLATFORM")
                .and_then(|v| parse_go_bool(v))
                .unwrap_or(false),
            attest_provenance: get("BUILDKIT_ATTEST_PROVENANCE"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn builtin_names() {
        for name in [
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
            "BUILDKIT_INLINE_CACHE",
            "BUILDKIT_CACHE_MOUNT_NS",
            "SOURCE_DATE_EPOCH",
            "BUILDKIT_DOCKERFILE_CHECK",
            "BUILDKIT_SYNTAX",
            "BUILDKIT_MULTI_PLATFORM",
            "BUILDKIT_SANDBOX_HOSTNAME",
            "BUILDKIT_BUILD_NAME",
            "BUILDKIT_ATTEST_PROVENANCE",
        ] {
            assert!(is_builtin(name), "{name}");
        }
        for name in [
            "BUILDKIT",
            "BUILDKIT_FROBNICATE",
            "source_date_epoch",
            "HTTP_PROXY",
        ] {
            assert!(!is_builtin(name), "{name}");
        }
        assert_eq!(without_effect("BUILDKIT_MULTI_PLATFORM"), None);
        assert!(without_effect("BUILDKIT_ATTEST_SBOM").is_some());
        assert_eq!(without_effect("BUILDKIT_ATTEST_PROVENANCE"), None);
        assert_eq!(without_effect("BUILDKIT_CACHE_MOUNT_NS"), None);
        assert_eq!(without_effect("BUILDKIT_BUILD_NAME"), None);
    }

    #[test]
    fn values() {
        let b = BuildkitArgs::from_build_args(&args(&[
            ("BUILDKIT_CACHE_MOUNT_NS", "team-a"),
            ("SOURCE_DATE_EPOCH", "1700000000"),
            ("BUILDKIT_INLINE_CACHE", "1"),
            ("BUILDKIT_SYNTAX", "docker/dockerfile:1"),
            ("BUILDKIT_DOCKERFILE_CHECK", "skip=all"),
            ("BUILDKIT_CONTEXT_KEEP_GIT_DIR", "true"),
            ("BUILDKIT_MULTI_PLATFORM", "true"),
        ]))
        .unwrap();
        assert!(b.keep_git_dir);
        assert_eq!(without_effect("BUILDKIT_CONTEXT_KEEP_GIT_DIR"), None);
        assert!(b.multi_platform);
        assert_eq!(b.cache_mount_ns.as_deref(), Some("team-a"));
        assert_eq!(b.source_date_epoch, Some(1_700_000_000));
        assert!(b.inline_cache);
        assert_eq!(b.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(b.check.as_deref(), Some("skip=all"));
        for off in ["0", "false", "yes", ""] {
            let b = BuildkitArgs::from_build_args(&args(&[("BUILDKIT_INLINE_CACHE", off)]));
            assert!(!b.unwrap().inline_cache, "{off}");
        }
        let b = BuildkitArgs::from_build_args(&args(&[("SOURCE_DATE_EPOCH", "")])).unwrap();
        assert_eq!(b.source_date_epoch, None);
        let e = BuildkitArgs::from_build_args(&args(&[("SOURCE_DATE_EPOCH", "context")]));
        assert!(e.unwrap_err().contains("SOURCE_DATE_EPOCH"));
        assert_eq!(
            BuildkitArgs::from_build_args(&BTreeMap::new()).unwrap(),
            BuildkitArgs::default()
        );
    }
}
