//! Names and labels of what the operator creates, all derived from the ImageBuild, so that a
//! restarted operator finds what its predecessor created instead of creating it twice.
//!
//! A *run* is one build of one spec: `g<generation>`, plus `-r<hash>` when the
//! `kiln.dev/rebuild` annotation asks to build an unchanged spec again. Each run has attempts
//! numbered from 1, and each attempt exactly one build pod, `<name>-<run>-<attempt>`.

use sha2::{Digest, Sha256};

/// The label every object Kiln creates for a build carries: the ImageBuild's UID.
pub const LABEL_BUILD_UID: &str = "kiln.dev/build-uid";
/// The ImageBuild's name, for people (`kubectl get pods -l kiln.dev/build=app`); set only when
/// it fits a label value.
pub const LABEL_BUILD: &str = "kiln.dev/build";
/// The run a pod belongs to.
pub const LABEL_RUN: &str = "kiln.dev/run";
/// The attempt of a build pod.
pub const LABEL_ATTEMPT: &str = "kiln.dev/attempt";
/// `build` or `plan`.
pub const LABEL_ROLE: &str = "kiln.dev/role";
/// Kubernetes' recommended labels.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGER: &str = "kiln-operator";

/// Set to any new value to build an unchanged spec again.
pub const ANNOTATION_REBUILD: &str = "kiln.dev/rebuild";
/// Set to `"true"` to stop a build; it ends `Cancelled`.
pub const ANNOTATION_CANCEL: &str = "kiln.dev/cancel";

/// The build pod's annotation that carries `spec.ssh[i].knownHosts`, for the downward API.
pub fn known_hosts_annotation(i: usize) -> String {
    format!("ssh.kiln.dev/known-hosts-{i}")
}
/// The finalizer that stops a deleted build's pods before the ImageBuild goes.
pub const FINALIZER: &str = "kiln.dev/cleanup";

pub const ROLE_BUILD: &str = "build";
pub const ROLE_PLAN: &str = "plan";

/// The longest name we give an object, so that it also fits a label value and a hostname.
const MAX_NAME: usize = 63;

/// The run of the ImageBuild's current spec and rebuild annotation.
pub fn run_id(generation: i64, rebuild: Option<&str>) -> String {
    match rebuild.filter(|r| !r.is_empty()) {
        None => format!("g{generation}"),
        Some(token) => format!("g{generation}-r{}", short_hash(token, 8)),
    }
}

/// The build pod of one attempt.
pub fn build_pod(build: &str, run: &str, attempt: i32) -> String {
    bounded(build, &format!("{run}-{attempt}"))
}

/// The plan pod of a run.
pub fn plan_pod(build: &str, run: &str) -> String {
    bounded(build, &format!("{run}-plan"))
}

/// The ConfigMap that carries an inline context.
pub fn context_config_map(build: &str, run: &str) -> String {
    bounded(build, &format!("{run}-context"))
}

/// `<build>-<suffix>`, with the build's name shortened and made unique by a hash when the whole
/// would be longer than 63 characters.
fn bounded(build: &str, suffix: &str) -> String {
    let full = format!("{build}-{suffix}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = short_hash(build, 8);
    let keep = MAX_NAME.saturating_sub(suffix.len() + hash.len() + 2);
    let mut head: String = build.chars().take(keep).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}-{hash}-{suffix}")
}

/// The first `n` hex digits of the sha256 of `text`.
pub fn short_hash(text: &str, n: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(n);
    hex
}

/// Whether `value` can be a label value.
pub fn fits_label(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_short() {
        assert_eq!(run_id(3, None), "g3");
        assert_eq!(run_id(3, Some("")), "g3");
        let r = run_id(3, Some("2026-12-05"));
        assert!(r.starts_with("g3-r") && r.len() == 12, "{r}");
        assert_eq!(r, run_id(3, Some("2026-12-05")));
        assert_ne!(r, run_id(3, Some("2026-12-06")));
        assert_eq!(build_pod("app", "g3", 2), "app-g3-2");
        assert_eq!(plan_pod("app", "g3"), "app-g3-plan");
        assert_eq!(context_config_map("app", "g1"), "app-g1-context");
    }

    #[test]
    fn long_names_are_cut_and_stay_unique() {
        let a = "a".repeat(200);
        let b = format!("{}b", "a".repeat(199));
        let pa = build_pod(&a, "g1-r0123abcd", 10);
        let pb = build_pod(&b, "g1-r0123abcd", 10);
        assert!(pa.len() <= 63 && pb.len() <= 63, "{pa} {pb}");
        assert_ne!(pa, pb);
        assert!(pa.ends_with("-g1-r0123abcd-10"));
        assert!(fits_label(&pa));
        // A cut that would end in a dash does not produce a double dash.
        let dashed = format!("{}-{}", "x".repeat(45), "y".repeat(100));
        let p = build_pod(&dashed, "g1", 1);
        assert!(!p.contains("--"), "{p}");
    }

    #[test]
    fn label_values() {
        assert!(fits_label("app-1.x_y"));
        assert!(fits_label(""));
        assert!(!fits_label("-app"));
        assert!(!fits_label(&"a".repeat(64)));
        assert!(!fits_label("a/b"));
    }
}
