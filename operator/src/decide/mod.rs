//! The operator's decisions: a pure function of one ImageBuild and what the operator observed
//! about it, returning the actions that move the cluster towards the spec.
//!
//! Nothing here talks to the API server, sleeps or reads a clock: the reconcile shell
//! (`controller.rs`) gathers an [`Observed`], calls [`decide`], and carries out the
//! [`Action`]s in order. The tests feed states in and compare the actions that come out.
//!
//! The rules, in order:
//! 1. Pods of an older run (an older generation or rebuild request) are deleted: the newest
//!    spec wins, even over a running build.
//! 2. A build whose current run has ended stays as it is: re-applying the same spec never
//!    rebuilds.
//! 3. `kiln.dev/cancel: "true"` stops the run (`Cancelled`).
//! 4. An invalid spec, or `privileged` without the operator's opt-in, fails (`InvalidSpec`,
//!    `PrivilegedNotAllowed`) before any pod exists.
//! 5. A missing Secret, ConfigMap or PVC keeps the build `Pending` (`MissingSecret`,
//!    `MissingSource`); it starts by itself when the object appears.
//! 6. The plan: in-process for inline and ConfigMap sources, else from a plan pod. A
//!    Dockerfile error fails the build (`InvalidDockerfile`), as does a required secret or ssh
//!    id that the spec does not provide.
//! 7. The build pod of the current attempt is created once a concurrency slot is free
//!    (`Queued` until then). Its name is derived from the run and the attempt, so a restarted
//!    operator adopts it instead of creating a second one.
//! 8. A failed attempt is retried with exponential backoff while `backoffLimit` allows and the
//!    reason is one a retry can fix; a pod that disappeared is retried too (at least twice).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{CacheStatus, ImageBuild, ImageBuildStatus, Phase, StepStats};
use kube::ResourceExt;

mod checks;
mod pods;

use checks::{check_plan_against_spec, check_spec};
pub use pods::is_finished;
use pods::{cannot_start, finished_at, label, pod_phase};

use crate::admission::Admission;
use crate::config::Config;
use crate::plan::{PlanError, PlanFacts};
use crate::result::{self, Outcome};
use crate::{cache, names, pod, reasons, status};

/// What the shell observed about one ImageBuild.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: Timestamp,
    /// The pods labelled with the build's UID. A pod that the status names but the cache lacks
    /// has been looked up directly before it is left out.
    pub pods: Vec<Pod>,
    /// Referenced objects that do not exist.
    pub missing: Vec<MissingRef>,
    /// The plan, for sources the operator plans in-process; `None` for plan-pod sources.
    pub local_plan: Option<Result<PlanFacts, PlanError>>,
    /// The keys of a ConfigMap source, to place them at their paths.
    pub config_map_keys: Vec<String>,
    /// Whether a concurrency slot is free for this build.
    pub admission: Admission,
    /// The cache claims of the build's namespace.
    pub cache_claims: Vec<PersistentVolumeClaim>,
    /// The live pods of other builds in the namespace, which may hold cache claims.
    pub cache_pods: Vec<Pod>,
    /// The cluster's Kubernetes minor version (1.x), when known.
    pub cluster_minor: Option<u32>,
}

/// A referenced object that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRef {
    /// `Secret`, `ConfigMap` or `PersistentVolumeClaim`.
    pub kind: &'static str,
    pub name: String,
    /// The field that references it, such as `spec.secrets[0].secretRef`.
    pub field: String,
}

/// One step of carrying out a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create, or adopt if it exists (same name).
    CreateConfigMap(Box<ConfigMap>),
    /// Create, or adopt if it exists (same name).
    CreatePod(Box<Pod>),
    /// Create a cache claim, or use it if it exists (same name).
    CreateClaim(Box<PersistentVolumeClaim>),
    /// Record that these cache claims are in use now (their last-used annotation).
    TouchClaims(Vec<String>),
    /// Record that the worker (`owner`, `uid:gid`) owns these claims' roots now.
    OwnClaims {
        claims: Vec<String>,
        owner: String,
    },
    DeletePod(String),
    /// Write the whole status (server-side apply).
    ApplyStatus(Box<ImageBuildStatus>),
    Event(Event),
}

/// An Event about the ImageBuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// What to do and when to look again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// Look again after this long even if nothing changes (a backoff, or a safety net).
    pub requeue: Option<Duration>,
}

/// How often a build that waits for something the operator cannot watch looks again.
pub const WAIT_RECHECK: Duration = Duration::from_secs(300);
/// How often a queued build looks again, besides being woken when a slot frees.
pub const QUEUE_RECHECK: Duration = Duration::from_secs(30);

/// The longest status message; the rest of a long log tail is cut.
const MAX_MESSAGE: usize = 2048;

/// The decision for one ImageBuild.
pub fn decide(build: &ImageBuild, seen: &Observed, config: &Config) -> Decision {
    Decider::new(build, seen, config).run()
}

/// The actions that let a deleted ImageBuild go: stop its pods.
pub fn cleanup(seen: &Observed) -> Vec<Action> {
    seen.pods
        .iter()
        .filter(|p| !is_finished(p) && p.metadata.deletion_timestamp.is_none())
        .map(|p| Action::DeletePod(p.name_any()))
        .collect()
}

struct Decider<'a> {
    build: &'a ImageBuild,
    seen: &'a Observed,
    config: &'a Config,
    generation: i64,
    run: String,
    old: ImageBuildStatus,
    new: ImageBuildStatus,
    actions: Vec<Action>,
    requeue: Option<Duration>,
}

impl<'a> Decider<'a> {
    fn new(build: &'a ImageBuild, seen: &'a Observed, config: &'a Config) -> Self {
        let generation = build.metadata.generation.unwrap_or(0);
        let run = names::run_id(
            generation,
            build
                .annotations()
                .get(names::ANNOTATION_REBUILD)
                .map(String::as_str),
        );
        let old = build.status.clone().unwrap_or_default();
        let new = if old.run.as_deref() == Some(run.as_str())
            && old.observed_generation == Some(generation)
        {
            old.clone()
        } else {
            // A new run: nothing of the previous run's result describes it. The conditions
            // stay, so that their transition times stay true.
            ImageBuildStatus {
                phase: Some(Phase::Pending),
                conditions: old.conditions.clone(),
                observed_generation: Some(generation),
                run: Some(run.clone()),
                ..Default::default()
            }
        };
        Decider {
            build,
            seen,
            config,
            generation,
            run,
            old,
            new,
            actions: Vec::new(),
            requeue: None,
        }
    }

    fn run(mut self) -> Decision {
        self.delete_other_runs();
        if self.new.phase.is_some_and(Phase::is_terminal) {
            self.delete_live_pods_of_this_run();
            return self.finish();
        }
        if self
            .build
            .annotations()
            .get(names::ANNOTATION_CANCEL)
            .is_some_and(|v| v == "true")
        {
            self.delete_live_pods_of_this_run();
            self.set_phase(
                Phase::Cancelled,
                reasons::CANCELLED,
                "stopped by the kiln.dev/cancel annotation".into(),
            );
            return self.finish();
        }
        if let Err((reason, message)) = check_spec(self.build, self.seen.cluster_minor, self.config)
        {
            self.fail(reason, message);
            return self.finish();
        }
        if !self.seen.missing.is_empty() {
            self.wait_for_missing();
            return self.finish();
        }
        let Some(plan) = self.plan() else {
            return self.finish();
        };
        if let Err((reason, message)) = check_plan_against_spec(self.build, &plan) {
            self.fail(reason, message);
            return self.finish();
        }
        if plan.revision.is_some() {
            self.new.revision = plan.revision.clone();
        }
        self.build_attempts(&plan);
        self.finish()
    }

    fn finish(mut self) -> Decision {
        self.record_owned_claims();
        let ended = self.new.phase.is_some_and(Phase::is_terminal)
            && (self.old.phase != self.new.phase || self.old.run != self.new.run);
        if ended && !self.new.caches.is_empty() {
            let claims = self
                .new
                .caches
                .iter()
                .map(|c| c.claim_name.clone())
                .collect();
            self.actions.push(Action::TouchClaims(claims));
        }
        // The status first, once, and only if it changed; then an Event for the transition, so
        // that a failed status write (retried) does not repeat the Event.
        if self.new != self.old {
            self.actions
                .push(Action::ApplyStatus(Box::new(self.new.clone())));
        }
        let old_key = (self.old.phase, ready_reason(&self.old), self.old.attempt);
        let new_key = (self.new.phase, ready_reason(&self.new), self.new.attempt);
        let changed_run = self.old.run != self.new.run;
        if old_key != new_key || changed_run {
            let phase = self.new.phase.unwrap_or_default();
            let reason = ready_reason(&self.new).unwrap_or_else(|| reasons::PENDING.to_string());
            let warning = matches!(phase, Phase::Failed | Phase::Cancelled)
                || matches!(
                    reason.as_str(),
                    reasons::MISSING_SECRET
                        | reasons::MISSING_SOURCE
                        | reasons::WAITING_FOR_CACHE
                        | reasons::RETRYING
                        | reasons::POD_CANNOT_START
                );
            let note = self.new.message.clone().unwrap_or_default();
            self.actions.push(Action::Event(Event {
                warning,
                reason,
                note: first_line(&note).to_string(),
            }));
        }
        Decision {
            actions: self.actions,
            requeue: self.requeue,
        }
    }

    fn pods_of_run(&self) -> impl Iterator<Item = &'a Pod> + '_ {
        let run = self.run.clone();
        self.seen
            .pods
            .iter()
            .filter(move |p| label(p, names::LABEL_RUN) == Some(run.as_str()))
    }

    fn pod_named(&self, name: &str) -> Option<&'a Pod> {
        self.seen.pods.iter().find(|p| p.name_any() == name)
    }

    fn delete_other_runs(&mut self) {
        let doomed: Vec<String> = self
            .seen
            .pods
            .iter()
            .filter(|p| label(p, names::LABEL_RUN) != Some(self.run.as_str()))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        self.actions
            .extend(doomed.into_iter().map(Action::DeletePod));
    }

    fn delete_live_pods_of_this_run(&mut self) {
        let doomed: Vec<String> = self
            .pods_of_run()
            .filter(|p| !is_finished(p) && p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        self.actions
            .extend(doomed.into_iter().map(Action::DeletePod));
    }

    fn wait_for_missing(&mut self) {
        let secrets = self.seen.missing.iter().any(|m| m.kind == "Secret");
        let reason = if secrets {
            reasons::MISSING_SECRET
        } else {
            reasons::MISSING_SOURCE
        };
        let list: Vec<String> = self
            .seen
            .missing
            .iter()
            .map(|m| format!("{} {:?} ({})", m.kind, m.name, m.field))
            .collect();
        let message = format!(
            "waiting for {} to exist; the build starts when it does",
            list.join(", ")
        );
        self.set_phase(Phase::Pending, reason, message);
        self.requeue = Some(WAIT_RECHECK);
    }

    /// The plan, or `None` when planning is under way or failed (the status says which).
    fn plan(&mut self) -> Option<PlanFacts> {
        if let Some(local) = &self.seen.local_plan {
            return match local {
                Ok(facts) => Some(facts.clone()),
                Err(e) => {
                    self.fail(&e.reason, e.message.clone());
                    None
                }
            };
        }
        let name = names::plan_pod(&self.build.name_any(), &self.run);
        match self.pod_named(&name) {
            None => {
                let pod = pod::plan_pod(&self.inputs(None));
                self.actions.push(Action::CreatePod(Box::new(pod)));
                self.set_phase(
                    Phase::Planning,
                    reasons::PLANNING,
                    format!("planning in pod {name}"),
                );
                None
            }
            Some(p) if !is_finished(p) => {
                self.set_phase(
                    Phase::Planning,
                    reasons::PLANNING,
                    format!("planning in pod {name}"),
                );
                None
            }
            Some(p) => {
                let message = result::termination_message(p).unwrap_or_default();
                match crate::plan::from_termination_message(message) {
                    Ok(facts) if pod_phase(p) == "Succeeded" => Some(facts),
                    Ok(_) => {
                        self.fail(
                            reasons::PLAN_FAILED,
                            format!("the plan pod {name} failed without saying why"),
                        );
                        None
                    }
                    Err(e) => {
                        let reason = if p.status.as_ref().and_then(|s| s.reason.as_deref())
                            == Some("DeadlineExceeded")
                        {
                            reasons::PLAN_FAILED.to_string()
                        } else {
                            e.reason
                        };
                        self.fail(&reason, e.message);
                        None
                    }
                }
            }
        }
    }

    fn inputs<'b>(&'b self, revision: Option<&'b str>) -> pod::Inputs<'b> {
        pod::Inputs {
            build: self.build,
            run: &self.run,
            config: self.config,
            revision,
        }
    }

    fn build_attempts(&mut self, plan: &PlanFacts) {
        let name = self.build.name_any();
        // The attempt in progress: the status's, or a newer one whose pod exists (the operator
        // stopped between creating a pod and recording it).
        let pod_attempt = self
            .pods_of_run()
            .filter(|p| label(p, names::LABEL_ROLE) == Some(names::ROLE_BUILD))
            .filter_map(|p| label(p, names::LABEL_ATTEMPT)?.parse::<i32>().ok())
            .max()
            .unwrap_or(0);
        let attempt = self.new.attempt.unwrap_or(0).max(pod_attempt);
        if attempt == 0 {
            self.start_attempt(1, plan);
            return;
        }
        let pod_name = names::build_pod(&name, &self.run, attempt);
        let failure = match self.pod_named(&pod_name) {
            None if self.new.pod_name.as_deref() == Some(pod_name.as_str())
                && self.new.phase == Some(Phase::Building) =>
            {
                Some((
                    reasons::POD_LOST.to_string(),
                    format!("the build pod {pod_name} disappeared before it finished"),
                    None,
                ))
            }
            None => {
                // Recorded but never created (the operator stopped in between, or the pod of a
                // failed attempt was deleted by hand): start it.
                self.start_attempt(attempt, plan);
                return;
            }
            Some(p) if !is_finished(p) => {
                self.new.attempt = Some(attempt);
                self.new.pod_name = Some(pod_name.clone());
                if self.new.start_time.is_none() {
                    self.new.start_time = Some(Time(
                        p.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| t.0)
                            .unwrap_or(self.seen.now),
                    ));
                }
                let attempt_note = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                match cannot_start(p) {
                    // The build waits on something only a person can fix (an image that cannot
                    // be pulled, a bad volume): say so, and let spec.timeout end it.
                    Some(why) => self.set_phase(
                        Phase::Building,
                        reasons::POD_CANNOT_START,
                        format!("the build pod {pod_name} cannot start: {why}"),
                    ),
                    None => self.set_phase(
                        Phase::Building,
                        reasons::BUILDING,
                        format!("building in pod {pod_name}{attempt_note}"),
                    ),
                }
                return;
            }
            Some(p) => match result::outcome(p) {
                Outcome::Pushed(r) => {
                    self.succeed(&r, p);
                    return;
                }
                // The operator deletes a pod of the run it reads only after ending the run,
                // so a failed pod on its way out was deleted by someone else (an eviction, a
                // drain, `kubectl delete`), whatever the worker managed to report first.
                Outcome::Failed { reason, message }
                    if p.metadata.deletion_timestamp.is_some()
                        && !matches!(
                            reason.as_str(),
                            reasons::DEADLINE_EXCEEDED | reasons::POD_LOST
                        )
                        && reason != kiln_worker::result::Reason::DiskFull.as_str() =>
                {
                    Some((
                        reasons::POD_LOST.to_string(),
                        format!(
                            "the build pod {pod_name} was deleted (evicted, drained or deleted by hand) before it finished: {}",
                            first_line(&message)
                        ),
                        finished_at(p),
                    ))
                }
                Outcome::Failed { reason, message } => Some((reason, message, finished_at(p))),
            },
        };
        if let Some((reason, message, at)) = failure {
            self.after_failure(attempt, plan, reason, message, at);
        }
    }

    fn start_attempt(&mut self, attempt: i32, plan: &PlanFacts) {
        if let Admission::Queued(message) = &self.seen.admission {
            // The attempt counts once its pod exists; until then the status keeps the last one.
            self.new.attempt = (attempt > 1).then_some(attempt - 1);
            self.set_phase(Phase::Pending, reasons::QUEUED, message.clone());
            self.requeue = Some(QUEUE_RECHECK);
            return;
        }
        let caches = match self.choose_caches(plan) {
            Ok(c) => c,
            Err(wait) => {
                self.new.attempt = (attempt > 1).then_some(attempt - 1);
                let by = match &wait.holder_build {
                    Some(b) => format!("build {b} (pod {})", wait.holder_pod),
                    None => format!("pod {}", wait.holder_pod),
                };
                self.set_phase(
                    Phase::Pending,
                    reasons::WAITING_FOR_CACHE,
                    format!(
                        "waiting for cache {:?} (claim {}): {by} holds it locked",
                        wait.id, wait.claim
                    ),
                );
                self.requeue = Some(QUEUE_RECHECK);
                return;
            }
        };
        let revision = plan.revision.clone();
        let inputs = self.inputs(revision.as_deref());
        let config_map = pod::context_config_map(&inputs);
        let mut pod = pod::build_pod(&inputs, attempt);
        if let Some(cm) = config_map {
            self.actions.push(Action::CreateConfigMap(Box::new(cm)));
        }
        if self.build.spec.source.config_map.is_some() {
            pod = pod::with_config_map_items(pod, &self.seen.config_map_keys);
        }
        if !caches.is_empty() {
            let mut touched = Vec::new();
            for (choice, _) in &caches {
                match &choice.create {
                    Some(claim) => self
                        .actions
                        .push(Action::CreateClaim(Box::new(claim.clone()))),
                    None => touched.push(choice.claim.clone()),
                }
            }
            if !touched.is_empty() {
                self.actions.push(Action::TouchClaims(touched));
            }
            pod = pod::with_caches(pod, &caches, self.config);
            self.new.caches = caches
                .iter()
                .map(|(c, _)| CacheStatus {
                    id: c.need.id.clone(),
                    claim_name: c.claim.clone(),
                    sharing: sharing_name(c.need.sharing).to_string(),
                    warm: Some(c.create.is_none()),
                })
                .collect();
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        self.actions.push(Action::CreatePod(Box::new(pod)));
        self.new.attempt = Some(attempt);
        self.new.pod_name = Some(pod_name.clone());
        if self.new.start_time.is_none() {
            self.new.start_time = Some(Time(self.seen.now));
        }
        let attempt_note = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        self.set_phase(
            Phase::Building,
            reasons::BUILDING,
            format!("building in pod {pod_name}{attempt_note}"),
        );
    }

    /// Claims that the current pod's init container handed to the worker, and that do not say
    /// so yet: the next pod that mounts them can do without an init container.
    fn record_owned_claims(&mut self) {
        let Some(name) = self.new.pod_name.as_deref() else {
            return;
        };
        let Some(current) = self.seen.pods.iter().find(|p| p.name_any() == name) else {
            return;
        };
        let owner = pod::claim_owner();
        let claims: Vec<String> = pod::handed_over(current)
            .into_iter()
            .filter(|claim| {
                self.seen.cache_claims.iter().any(|c| {
                    c.name_any() == *claim
                        && c.annotations().get(cache::ANNOTATION_OWNER) != Some(&owner)
                })
            })
            .collect();
        if !claims.is_empty() {
            self.actions.push(Action::OwnClaims { claims, owner });
        }
    }

    /// The claims of the plan's caches, each with the mount it serves; or what the build waits
    /// for.
    fn choose_caches(
        &self,
        plan: &PlanFacts,
    ) -> Result<Vec<(cache::Choice, crate::plan::CacheUse)>, cache::Wait> {
        if !self.config.cache_volumes.enabled || plan.caches.is_empty() {
            return Ok(Vec::new());
        }
        let needs = cache::needs(plan.caches.iter().map(|c| cache::Need {
            key: c.key(),
            id: c.id.clone(),
            sharing: c.sharing,
        }));
        let namespace = self.build.namespace().unwrap_or_default();
        let choices = cache::choose(
            &needs,
            &cache::Inputs {
                namespace: &namespace,
                spec: &self.build.spec,
                claims: &self.seen.cache_claims,
                pods: &self.seen.cache_pods,
                default_size: self.config.defaults.cache_size.as_deref(),
                default_class: self.config.defaults.cache_storage_class_name.as_deref(),
                now: self.seen.now,
            },
        )?;
        Ok(choices
            .into_iter()
            .filter_map(|c| {
                let mount = plan.caches.iter().find(|m| m.key() == c.need.key)?.clone();
                Some((c, mount))
            })
            .collect())
    }

    fn after_failure(
        &mut self,
        attempt: i32,
        plan: &PlanFacts,
        reason: String,
        message: String,
        failed_at: Option<Timestamp>,
    ) {
        let limit = self.build.spec.backoff_limit.unwrap_or(0).max(0);
        let lost = reason == reasons::POD_LOST;
        // A pod Kubernetes took away is not the build's fault: it gets at least two retries.
        let max_attempts = if lost { limit.max(2) + 1 } else { limit + 1 };
        self.new.attempt = Some(attempt);
        if reasons::is_permanent(&reason) || attempt >= max_attempts {
            let message = if attempt > 1 {
                format!("{message} (attempt {attempt} of {max_attempts})")
            } else {
                message
            };
            self.fail(&reason, message);
            return;
        }
        let delay = if lost {
            Duration::ZERO
        } else {
            self.config.backoff.delay_before(attempt + 1)
        };
        let due = add(failed_at.unwrap_or(self.seen.now), delay);
        self.new.message = None;
        self.set_phase(
            Phase::Building,
            reasons::RETRYING,
            format!(
                "attempt {attempt} failed ({reason}): {}; attempt {} starts at {due}",
                first_line(&message),
                attempt + 1
            ),
        );
        if due <= self.seen.now {
            self.start_attempt(attempt + 1, plan);
        } else {
            self.requeue = Some(duration_until(self.seen.now, due));
        }
    }

    fn succeed(&mut self, r: &result::Success, pod: &Pod) {
        let digest = r.digest.clone();
        // `repository@digest`, without the tag: what pulls exactly this image everywhere
        // (several tools refuse a reference with both).
        let image = kiln_crds::reference::Reference::parse(&self.build.spec.output.image)
            .ok()
            .map(|reference| reference.with_digest(&digest).to_string())
            .or_else(|| r.image.clone());
        self.new.short_digest = digest
            .split_once(':')
            .map(|(_, hex)| hex.chars().take(12).collect());
        self.new.digest = Some(digest);
        self.new.image = image.clone();
        if r.revision.is_some() {
            self.new.revision = r.revision.clone();
        }
        self.new.steps = Some(StepStats {
            total: r.steps.total as i32,
            cached: r.steps.cached as i32,
        });
        let end = finished_at(pod).unwrap_or(self.seen.now);
        self.complete(end);
        let steps = format!(" ({} steps, {} cached)", r.steps.total, r.steps.cached);
        self.set_phase(
            Phase::Succeeded,
            reasons::SUCCEEDED,
            format!("pushed {}{steps}", image.unwrap_or_default()),
        );
    }

    fn complete(&mut self, end: Timestamp) {
        self.new.completion_time = Some(Time(end));
        if let Some(start) = &self.new.start_time {
            let secs = end.as_second() - start.0.as_second();
            self.new.duration = Some(status::human_duration(secs));
        }
    }

    fn fail(&mut self, reason: &str, message: String) {
        if self.new.completion_time.is_none() {
            self.complete(self.seen.now);
        }
        self.set_phase(Phase::Failed, reason, message);
    }

    fn set_phase(&mut self, phase: Phase, reason: &str, message: String) {
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.new.phase = Some(phase);
        if !phase.is_terminal() {
            self.new.completion_time = None;
            self.new.duration = None;
        }
        status::apply_phase(
            &mut self.new.conditions,
            phase,
            reason,
            first_line(&message),
            self.generation,
            self.seen.now,
        );
        self.new.message = Some(message);
    }
}

fn sharing_name(s: kiln_worker::plan::step::Sharing) -> &'static str {
    match s {
        kiln_worker::plan::step::Sharing::Shared => "shared",
        kiln_worker::plan::step::Sharing::Private => "private",
        kiln_worker::plan::step::Sharing::Locked => "locked",
    }
}

fn ready_reason(s: &ImageBuildStatus) -> Option<String> {
    status::condition(&s.conditions, status::READY).map(|c| c.reason.clone())
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    k8s_openapi::jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

fn duration_until(now: Timestamp, then: Timestamp) -> Duration {
    let secs = (then.as_millisecond() - now.as_millisecond()).max(0) as u64;
    Duration::from_millis(secs) + Duration::from_millis(100)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
