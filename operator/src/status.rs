//! The status an ImageBuild shows: its phase, and conditions that follow the Kubernetes
//! conventions that kstatus (Flux), Argo CD and `kubectl wait` read.
//!
//! - `Ready`: True once the image is pushed; otherwise False, and its reason says why.
//! - `Reconciling`: True while the operator works towards the spec (pending, planning,
//!   building, retrying); absent once the build has ended.
//! - `Stalled`: True when the build ended without an image and only a change of the spec (or of
//!   what it references) can help; absent otherwise.
//! - `Building`: True while a build pod runs.
//!
//! A condition's `lastTransitionTime` changes only when its status changes, as metav1.Condition
//! requires, so an unchanged state writes an identical status and causes no update.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kiln_crds::Phase;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const BUILDING: &str = "Building";

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: Some(generation),
        last_transition_time,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Removes a condition.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Writes the four conditions for a phase and its reason.
pub fn apply_phase(
    conditions: &mut Vec<Condition>,
    phase: Phase,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let ready = phase == Phase::Succeeded;
    set(conditions, READY, ready, reason, message, generation, now);
    if phase.is_terminal() {
        remove(conditions, RECONCILING);
    } else {
        set(
            conditions,
            RECONCILING,
            true,
            reason,
            message,
            generation,
            now,
        );
    }
    if matches!(phase, Phase::Failed | Phase::Cancelled) {
        set(conditions, STALLED, true, reason, message, generation, now);
    } else {
        remove(conditions, STALLED);
    }
    set(
        conditions,
        BUILDING,
        phase == Phase::Building,
        reason,
        message,
        generation,
        now,
    );
    // A stable order, so that the same state always serialises the same way.
    conditions.sort_by_key(|c| condition_rank(&c.type_));
}

fn condition_rank(type_: &str) -> usize {
    [READY, RECONCILING, STALLED, BUILDING]
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(usize::MAX)
}

/// A condition's status, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The health an Argo CD or kstatus reader derives from a status: what the Lua health check in
/// `docs/gitops.md` computes, kept here so the two cannot drift apart unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Ready=True at the current generation.
    Healthy,
    /// Stalled=True: needs a change to the spec.
    Degraded,
    /// Anything else, including a status that describes an older generation.
    Progressing,
}

/// kstatus' rules: a status older than the spec is in progress; Stalled wins over Ready.
pub fn health(
    generation: i64,
    observed_generation: Option<i64>,
    conditions: &[Condition],
) -> Health {
    if observed_generation != Some(generation) {
        return Health::Progressing;
    }
    let is_true = |t: &str| condition(conditions, t).is_some_and(|c| c.status == "True");
    if is_true(STALLED) {
        Health::Degraded
    } else if is_true(READY) && !is_true(RECONCILING) {
        Health::Healthy
    } else {
        Health::Progressing
    }
}

/// A duration as people read it: `45s`, `3m12s`, `1h2m3s`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut c = Vec::new();
        apply_phase(&mut c, Phase::Pending, "Queued", "waiting", 1, t(0));
        apply_phase(&mut c, Phase::Building, "Building", "pod x", 1, t(10));
        let ready = condition(&c, READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "Building");
        assert_eq!(ready.last_transition_time, Time(t(0)));
        let building = condition(&c, BUILDING).unwrap();
        assert_eq!(building.last_transition_time, Time(t(10)));
        apply_phase(&mut c, Phase::Succeeded, "Succeeded", "pushed", 1, t(20));
        assert_eq!(
            condition(&c, READY).unwrap().last_transition_time,
            Time(t(20))
        );
        assert!(condition(&c, RECONCILING).is_none());
        assert!(condition(&c, STALLED).is_none());
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, BUILDING]);
    }

    #[test]
    fn kstatus_health_of_each_phase() {
        let cases = [
            (Phase::Pending, "Queued", Health::Progressing),
            (Phase::Planning, "Planning", Health::Progressing),
            (Phase::Building, "Building", Health::Progressing),
            (Phase::Succeeded, "Succeeded", Health::Healthy),
            (Phase::Failed, "StepFailed", Health::Degraded),
            (Phase::Cancelled, "Cancelled", Health::Degraded),
        ];
        for (phase, reason, want) in cases {
            let mut c = Vec::new();
            apply_phase(&mut c, phase, reason, "", 4, t(0));
            assert_eq!(health(4, Some(4), &c), want, "{phase:?}");
            // A status written for an older generation is never healthy.
            assert_eq!(health(5, Some(4), &c), Health::Progressing, "{phase:?}");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3723), "1h2m3s");
        assert_eq!(human_duration(-5), "0s");
    }
}
