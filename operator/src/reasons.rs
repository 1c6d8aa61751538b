//! The short, stable reasons of conditions, Events and metric labels.
//!
//! Users match on these (alerts, `kubectl wait`, dashboards), so a name never changes meaning.
//! The worker's failure reasons (`StepFailed`, `PushFailed`, …) come from its result and are
//! passed through unchanged; the ones here are the operator's own.

/// The build was accepted and waits for its first step.
pub const PENDING: &str = "Pending";
/// A concurrency limit is reached; the build starts when a slot frees.
pub const QUEUED: &str = "Queued";
/// A Secret the build references does not exist yet.
pub const MISSING_SECRET: &str = "MissingSecret";
/// The ConfigMap or PersistentVolumeClaim of the source does not exist yet.
pub const MISSING_SOURCE: &str = "MissingSource";
/// A `sharing=locked` cache the build needs is held by another build's pod.
pub const WAITING_FOR_CACHE: &str = "WaitingForCache";
/// The Dockerfile is being resolved into a plan.
pub const PLANNING: &str = "Planning";
/// The build pod runs.
pub const BUILDING: &str = "Building";
/// The build pod exists but Kubernetes cannot start its container (the worker image cannot be
/// pulled, a volume cannot be mounted).
pub const POD_CANNOT_START: &str = "PodCannotStart";
/// A failed attempt waits for its retry.
pub const RETRYING: &str = "Retrying";
/// The image was pushed.
pub const SUCCEEDED: &str = "Succeeded";

/// The spec breaks a rule the schema could not enforce on this cluster.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// `securityProfile: privileged` without the operator's opt-in.
pub const PRIVILEGED_NOT_ALLOWED: &str = "PrivilegedNotAllowed";
/// The security profile needs a newer Kubernetes than the cluster's (`userns` before 1.33).
pub const PROFILE_UNSUPPORTED: &str = "ProfileUnsupported";
/// The Dockerfile does not parse or plan; the message names file, line and column.
pub const INVALID_DOCKERFILE: &str = "InvalidDockerfile";
/// The plan pod failed for a reason other than the Dockerfile.
pub const PLAN_FAILED: &str = "PlanFailed";
/// The build ran out of time (`spec.timeout`).
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// The build pod disappeared (deleted, evicted, or its node lost) before it finished.
pub const POD_LOST: &str = "PodLost";
/// The build pod failed without telling why (no result in its termination message).
pub const BUILD_FAILED: &str = "BuildFailed";
/// The build pod could not be created.
pub const POD_CREATE_FAILED: &str = "PodCreateFailed";
/// The build was stopped by the `kiln.dev/cancel` annotation.
pub const CANCELLED: &str = "Cancelled";

/// Whether another attempt cannot fix a failure with this reason: the same inputs fail the same
/// way. The worker's reasons say it themselves (`Reason::retryable`); a pod Kubernetes took away
/// or that ended without a result may well succeed next time.
pub fn is_permanent(reason: &str) -> bool {
    match reason {
        INVALID_SPEC
        | PRIVILEGED_NOT_ALLOWED
        | PROFILE_UNSUPPORTED
        | CANCELLED
        | DEADLINE_EXCEEDED => true,
        POD_LOST | BUILD_FAILED | PLAN_FAILED | POD_CREATE_FAILED => false,
        worker => serde_json::from_value::<kiln_worker::result::Reason>(serde_json::Value::String(
            worker.to_string(),
        ))
        .is_ok_and(|r| !r.retryable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_and_auth_errors_are_never_retried() {
        for r in [
            INVALID_DOCKERFILE,
            MISSING_SECRET,
            "RegistryAuth",
            INVALID_SPEC,
        ] {
            assert!(is_permanent(r), "{r}");
        }
        for r in [
            "StepFailed",
            "PushFailed",
            "PullFailed",
            POD_LOST,
            BUILD_FAILED,
            "DiskFull",
        ] {
            assert!(!is_permanent(r), "{r}");
        }
    }
}
