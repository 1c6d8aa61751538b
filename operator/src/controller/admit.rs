//! Admission under the concurrency limits: what the fair queue sees of a build and of the
//! builds it competes with (creation order, waiting states, held slots).

use super::*;

/// The admission entries of every build the operator knows, and whether `me` may start.
pub(super) fn admission_for(ctx: &Context, me: &ImageBuild, inflight: &mut Inflight) -> Admission {
    let mut active_uids: HashMap<String, ()> = HashMap::new();
    for p in ctx.pods.state() {
        if p.labels().get(names::LABEL_ROLE).map(String::as_str) == Some(names::ROLE_BUILD)
            && !decide::is_finished(&p)
            && p.metadata.deletion_timestamp.is_none()
            && let Some(uid) = p.labels().get(names::LABEL_BUILD_UID)
        {
            active_uids.insert(uid.clone(), ());
        }
    }
    // Once the cache shows a pod or a claim, the cache is the truth about it (a pod may have
    // ended already).
    inflight.started.retain(|_, (at, pod)| {
        ctx.pods.get(&ObjectRef::from_obj(pod)).is_none() && at.elapsed() < INFLIGHT
    });
    inflight.claims.retain(|_, (at, claim)| {
        ctx.pvcs.get(&ObjectRef::from_obj(claim)).is_none() && at.elapsed() < INFLIGHT
    });
    let entries: Vec<Entry> = ctx
        .builds
        .state()
        .iter()
        .filter(|b| {
            !b.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(Phase::is_terminal)
        })
        .map(|b| {
            let key = (b.namespace().unwrap_or_default(), b.name_any());
            let uid = b.uid().unwrap_or_default();
            let active = active_uids.contains_key(&uid) || inflight.started.contains_key(&key);
            Entry {
                namespace: key.0,
                name: key.1,
                created: created(b),
                active,
                waiting: !active && is_waiting(b.status.as_ref()),
            }
        })
        .collect();
    let me_entry = Entry {
        namespace: me.namespace().unwrap_or_default(),
        name: me.name_any(),
        created: created(me),
        active: false,
        waiting: true,
    };
    admission::admit(&me_entry, &entries, &ctx.config.concurrency)
}

pub(super) fn created(b: &ImageBuild) -> Timestamp {
    b.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A build waits for a slot when it is new or queued.
pub(super) fn is_waiting(s: Option<&ImageBuildStatus>) -> bool {
    match s {
        None => true,
        Some(s) => {
            let reason = status::condition(&s.conditions, status::READY).map(|c| c.reason.as_str());
            s.phase.is_none()
                || (s.phase == Some(Phase::Pending)
                    && matches!(
                        reason,
                        None | Some(reasons::QUEUED) | Some(reasons::PENDING)
                    ))
        }
    }
}

/// Whether the build has a live build pod of its current attempt (then it needs no slot).
pub(super) fn holds_slot(build: &ImageBuild, pods: &[Pod]) -> bool {
    let _ = build;
    pods.iter().any(|p| {
        p.labels().get(names::LABEL_ROLE).map(String::as_str) == Some(names::ROLE_BUILD)
            && !decide::is_finished(p)
            && p.metadata.deletion_timestamp.is_none()
    })
}
