//! Concurrency limits: which waiting build may start its pod.
//!
//! The limits count running build pods (plan pods are short and not counted), per namespace and
//! in the whole cluster. Waiting builds are served fairly: within a namespace in order of
//! creation, and across namespaces round-robin, so that one team's thirty builds do not starve
//! another team's one. A build's place is a pure function of what the operator observes, so two
//! replicas or a restarted operator agree on it.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::config::Concurrency;

/// A build the admission decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub namespace: String,
    pub name: String,
    pub created: Timestamp,
    /// Its build pod is pending or running.
    pub active: bool,
    /// It waits for a slot (and has no running build pod).
    pub waiting: bool,
}

/// Whether a build may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free for it.
    Admitted,
    /// It waits; the message says for what.
    Queued(String),
}

/// Decides for the build `me` (which wants a slot now), given every build the operator knows
/// (`me` among them or not).
pub fn admit(me: &Entry, entries: &[Entry], limits: &Concurrency) -> Admission {
    let (namespace, name) = (me.namespace.as_str(), me.name.as_str());
    let is_me = |e: &Entry| e.namespace == namespace && e.name == name;
    let mut active_in: BTreeMap<&str, u32> = BTreeMap::new();
    let mut active_total = 0u32;
    for e in entries.iter().filter(|e| e.active && !is_me(e)) {
        *active_in.entry(&e.namespace).or_default() += 1;
        active_total += 1;
    }
    let ns_limit = (limits.per_namespace > 0).then_some(limits.per_namespace);
    let cluster_limit = (limits.cluster > 0).then_some(limits.cluster);
    let mine = active_in.get(namespace).copied().unwrap_or(0);
    if let Some(limit) = ns_limit
        && mine >= limit
    {
        return Admission::Queued(format!(
            "waiting for a build slot: {mine} of {limit} builds in namespace {namespace} are running"
        ));
    }
    let Some(limit) = cluster_limit else {
        return Admission::Admitted;
    };
    let free = limit.saturating_sub(active_total) as usize;
    if free == 0 {
        return Admission::Queued(format!(
            "waiting for a build slot: {active_total} of {limit} builds in the cluster are running"
        ));
    }
    // Each namespace's waiting builds in creation order; a build's turn is its rank in its
    // namespace plus the builds that namespace already runs.
    let mut waiting: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.waiting && !e.active && !is_me(e))
        .chain(std::iter::once(me))
        .collect();
    waiting.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let mut rank_in: BTreeMap<&str, u32> = BTreeMap::new();
    let mut keyed: Vec<(u32, Timestamp, &str, &str)> = Vec::new();
    for e in &waiting {
        let rank = rank_in.entry(&e.namespace).or_default();
        let turn = *rank + active_in.get(e.namespace.as_str()).copied().unwrap_or(0);
        *rank += 1;
        // A build its own namespace's limit holds back does not take a cluster slot.
        if ns_limit.is_none_or(|l| turn < l) || is_me(e) {
            keyed.push((turn, e.created, &e.namespace, &e.name));
        }
    }
    keyed.sort();
    let position = keyed
        .iter()
        .position(|(_, _, ns, n)| *ns == namespace && *n == name)
        .expect("the build itself is always placed");
    if position < free {
        Admission::Admitted
    } else {
        Admission::Queued(format!(
            "waiting for a build slot: {active_total} of {limit} builds in the cluster are running; {} ahead in the queue",
            position + 1 - free
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn e(ns: &str, name: &str, created: i64, active: bool, waiting: bool) -> Entry {
        Entry {
            namespace: ns.into(),
            name: name.into(),
            created: at(created),
            active,
            waiting,
        }
    }

    fn limits(cluster: u32, per_namespace: u32) -> Concurrency {
        Concurrency {
            cluster,
            per_namespace,
        }
    }

    #[test]
    fn no_limits_admits_everything() {
        let all = vec![e("a", "x", 0, true, false), e("a", "y", 1, false, true)];
        assert_eq!(admit(&all[1], &all, &limits(0, 0)), Admission::Admitted);
    }

    #[test]
    fn the_namespace_limit_holds() {
        let all = vec![
            e("a", "x", 0, true, false),
            e("a", "y", 1, true, false),
            e("a", "z", 2, false, true),
        ];
        let got = admit(&all[2], &all, &limits(10, 2));
        assert!(
            matches!(&got, Admission::Queued(m) if m.contains("2 of 2 builds in namespace a")),
            "{got:?}"
        );
        assert_eq!(
            admit(&e("b", "w", 3, false, true), &all, &limits(10, 2)),
            Admission::Admitted
        );
    }

    #[test]
    fn waiting_builds_are_served_in_creation_order() {
        let all = vec![
            e("a", "run", 0, true, false),
            e("a", "first", 1, false, true),
            e("a", "second", 2, false, true),
            e("a", "third", 3, false, true),
        ];
        // Two slots free: the two oldest waiting builds get them, the third waits.
        let l = limits(3, 0);
        assert_eq!(admit(&all[1], &all, &l), Admission::Admitted);
        assert_eq!(admit(&all[2], &all, &l), Admission::Admitted);
        let got = admit(&all[3], &all, &l);
        assert!(
            matches!(&got, Admission::Queued(m) if m.contains("1 ahead")),
            "{got:?}"
        );
    }

    #[test]
    fn namespaces_share_the_cluster_fairly() {
        // Namespace a queued ten builds before namespace b queued one; one slot is free.
        let mut all: Vec<Entry> = (0..10)
            .map(|i| e("a", &format!("a{i}"), i, false, true))
            .collect();
        all.push(e("a", "running", 0, true, false));
        all.push(e("b", "b0", 20, false, true));
        let l = limits(2, 0);
        // a already runs one build, so b's first build goes before a's second.
        assert_eq!(admit(&all[11], &all, &l), Admission::Admitted);
        assert!(matches!(admit(&all[0], &all, &l), Admission::Queued(_)));
    }

    #[test]
    fn a_build_held_by_its_namespace_does_not_block_others() {
        let all = vec![
            e("a", "running", 0, true, false),
            e("a", "held", 1, false, true),
            e("b", "next", 2, false, true),
        ];
        // a is at its limit of 1, so its waiting build cannot use the free cluster slot; b's can.
        assert_eq!(admit(&all[2], &all, &limits(2, 1)), Admission::Admitted);
        assert!(matches!(
            admit(&all[1], &all, &limits(2, 1)),
            Admission::Queued(_)
        ));
    }

    #[test]
    fn a_build_not_yet_marked_waiting_is_still_placed() {
        let all = vec![e("a", "old", 0, false, true)];
        // "new" has no entry yet (the store has not seen its status): it queues behind "old".
        let got = admit(&e("a", "new", 5, false, true), &all, &limits(1, 0));
        assert_eq!(got, Admission::Queued("waiting for a build slot: 0 of 1 builds in the cluster are running; 1 ahead in the queue".into()));
    }
}
