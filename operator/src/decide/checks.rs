//! The checks a build passes before any pod exists: the spec alone, then the plan against the
//! spec (the secrets, ssh ids and cache volumes the Dockerfile uses).

use kiln_crds::{ImageBuild, SecurityProfile};

use crate::config::Config;
use crate::plan::PlanFacts;
use crate::reasons;

/// The spec's own checks (the CRD's schema and CEL rules) and what the cluster and the
/// operator's configuration allow of its security profile.
pub(super) fn check_spec(
    build: &ImageBuild,
    cluster_minor: Option<u32>,
    config: &Config,
) -> Result<(), (&'static str, String)> {
    let mut problems = Vec::new();
    if let Err(errors) = kiln_crds::validate(&build.spec) {
        problems.push(kiln_crds::validate::summarize(&errors));
    }
    if let Ok(value) = serde_json::to_value(build)
        && let Err(errors) = kiln_crds::validate_cel(&value)
    {
        let summary = kiln_crds::validate::summarize(&errors);
        if !problems.contains(&summary) {
            problems.push(summary);
        }
    }
    if !problems.is_empty() {
        return Err((reasons::INVALID_SPEC, problems.join("; ")));
    }
    if build.spec.security_profile == SecurityProfile::Userns
        && let Some(minor) = cluster_minor
        && minor < 33
    {
        // Before 1.33 the API server drops `hostUsers: false` without a word: the pod would
        // run as root with SYS_ADMIN in the node's own user namespace.
        return Err((
            reasons::PROFILE_UNSUPPORTED,
            format!(
                "spec.securityProfile: userns needs Kubernetes 1.33 or later (hostUsers: false); this cluster is 1.{minor}: use rootless"
            ),
        ));
    }
    if build.spec.security_profile == SecurityProfile::Privileged && !config.allow_privileged {
        return Err((
            reasons::PRIVILEGED_NOT_ALLOWED,
            "spec.securityProfile: privileged is not allowed by the operator's configuration (allowPrivileged)"
                .into(),
        ));
    }
    Ok(())
}

/// Required secret and ssh ids of the Dockerfile that the spec does not provide.
pub(super) fn check_plan_against_spec(
    build: &ImageBuild,
    plan: &PlanFacts,
) -> Result<(), (&'static str, String)> {
    let spec = &build.spec;
    let at = |line: u32| match line {
        0 => format!("{}: ", spec.dockerfile),
        n => format!("{}:{n}: ", spec.dockerfile),
    };
    for s in plan.secrets.iter().filter(|s| s.required) {
        if !spec.secrets.iter().any(|x| x.id == s.id) {
            return Err((
                reasons::MISSING_SECRET,
                format!(
                    "{}RUN --mount=type=secret,id={},required needs a secret that spec.secrets does not provide",
                    at(s.line),
                    s.id
                ),
            ));
        }
    }
    if let Some(cache) = &spec.cache {
        for (i, v) in cache.volumes.iter().enumerate() {
            if !plan.caches.iter().any(|c| c.id == v.id) {
                return Err((
                    reasons::INVALID_SPEC,
                    format!(
                        "spec.cache.volumes[{i}].id: no RUN --mount=type=cache of the stages this build runs uses the id {:?}",
                        v.id
                    ),
                ));
            }
        }
    }
    for s in plan.ssh.iter().filter(|s| s.required) {
        if !spec.ssh.iter().any(|x| x.id == s.id) {
            return Err((
                reasons::MISSING_SECRET,
                format!(
                    "{}RUN --mount=type=ssh,id={},required needs a key that spec.ssh does not provide",
                    at(s.line),
                    s.id
                ),
            ));
        }
    }
    Ok(())
}
