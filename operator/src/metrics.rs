//! The operator's Prometheus metrics, served as text on `/metrics`.
//!
//! Labels hold only stable, low-cardinality values (phases and reasons), never names.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseReason {
    pub phase: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    /// Transitions of builds, by the phase entered and the reason.
    pub transitions: Family<PhaseReason, Counter>,
    /// Builds that exist now, by phase (recomputed from the cache every few seconds).
    pub builds: Family<PhaseLabel, Gauge>,
    /// Builds waiting for a concurrency slot.
    pub queue_depth: Gauge,
    /// From the first pod's start to the end, of finished builds.
    pub build_duration: Family<ResultLabel, Histogram>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    pub reconcile_duration: Histogram,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Writes this operator sent to the API server, by kind.
    pub api_requests: Family<ErrorLabel, Counter>,
    /// Every request this operator's client sent to the API server, by verb (reads, watches
    /// and lists included): what a build costs the API server.
    pub api_calls: Family<VerbLabel, Counter>,
    /// Cache claims, and the storage they request.
    pub cache_claims: Gauge,
    pub cache_bytes: Gauge,
    /// Builds that had to wait for a locked cache, and how long they waited.
    pub cache_waits: Counter,
    pub cache_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let transitions = Family::<PhaseReason, Counter>::default();
        registry.register(
            "build_transitions",
            "Build phase transitions, by the phase entered and its reason",
            transitions.clone(),
        );
        let builds = Family::<PhaseLabel, Gauge>::default();
        registry.register("builds", "ImageBuilds by phase", builds.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "build_queue_depth",
            "ImageBuilds waiting for a concurrency slot",
            queue_depth.clone(),
        );
        let build_duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(5.0, 2.0, 12))
        });
        registry.register(
            "build_duration_seconds",
            "How long finished builds ran, from the first pod to the end",
            build_duration.clone(),
        );
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of ImageBuilds",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took",
            reconcile_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let api_requests = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "api_writes",
            "Writes this operator sent to the API server, by kind",
            api_requests.clone(),
        );
        let api_calls = Family::<VerbLabel, Counter>::default();
        registry.register(
            "api_requests",
            "Requests this operator sent to the API server, by verb (get, list, watch, create, patch, update, delete)",
            api_calls.clone(),
        );
        let cache_claims = Gauge::default();
        registry.register(
            "cache_claims",
            "PersistentVolumeClaims holding cache mounts",
            cache_claims.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_claim_bytes",
            "Storage the cache claims request",
            cache_bytes.clone(),
        );
        let cache_waits = Counter::default();
        registry.register(
            "cache_lock_waits",
            "Builds that waited for a locked cache",
            cache_waits.clone(),
        );
        let cache_wait_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "cache_lock_wait_seconds",
            "How long builds waited for a locked cache",
            cache_wait_seconds.clone(),
        );
        Metrics {
            cache_claims,
            cache_bytes,
            cache_waits,
            cache_wait_seconds,
            registry,
            transitions,
            builds,
            queue_depth,
            build_duration,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            leader,
            api_requests,
            api_calls,
        }
    }

    pub fn transition(&self, phase: &str, reason: &str) {
        self.transitions
            .get_or_create(&PhaseReason {
                phase: phase.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn finished(&self, result: &str, took: Duration) {
        self.build_duration
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn write(&self, kind: &str) {
        self.api_requests
            .get_or_create(&ErrorLabel {
                error: kind.to_string(),
            })
            .inc();
    }

    /// Counts one request of the operator's client, by its Kubernetes verb.
    pub fn api_call(&self, method: &http::Method, uri: &http::Uri) {
        self.api_calls
            .get_or_create(&VerbLabel {
                verb: verb(method, uri).to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The Kubernetes verb of a request: a GET is a `watch` with `watch=true`, a `list` on a
/// collection (a path that ends in a resource type, not a name) and a `get` otherwise. Our paths
/// are `/api/v1/[namespaces/NS/]TYPE[/NAME[/SUB]]` and `/apis/GROUP/VERSION/[namespaces/NS/]...`.
fn verb(method: &http::Method, uri: &http::Uri) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        http::Method::GET => {
            if uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
            {
                return "watch";
            }
            let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
            let rest: &[&str] = match parts.first() {
                Some(&"api") => parts.get(2..).unwrap_or_default(),
                Some(&"apis") => parts.get(3..).unwrap_or_default(),
                _ => return "get",
            };
            let rest = match rest {
                ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
                other => other,
            };
            if rest.len() == 1 { "list" } else { "get" }
        }
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_their_kubernetes_verb() {
        let v = |m: http::Method, u: &str| verb(&m, &u.parse().unwrap());
        assert_eq!(
            v(
                http::Method::GET,
                "/api/v1/pods?labelSelector=a%3Db&watch=true&resourceVersion=1"
            ),
            "watch"
        );
        assert_eq!(v(http::Method::GET, "/api/v1/pods?labelSelector=a"), "list");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/ns/pods"), "list");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/ns/pods/p"), "get");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces"), "list");
        assert_eq!(v(http::Method::GET, "/api/v1/namespaces/ns"), "get");
        assert_eq!(
            v(http::Method::GET, "/apis/kiln.dev/v1alpha1/imagebuilds"),
            "list"
        );
        assert_eq!(
            v(
                http::Method::GET,
                "/apis/kiln.dev/v1alpha1/namespaces/ns/imagebuilds/b"
            ),
            "get"
        );
        assert_eq!(
            v(
                http::Method::PATCH,
                "/apis/kiln.dev/v1alpha1/namespaces/ns/imagebuilds/b/status"
            ),
            "patch"
        );
        assert_eq!(
            v(http::Method::POST, "/api/v1/namespaces/ns/pods"),
            "create"
        );
        assert_eq!(v(http::Method::GET, "/version"), "get");
        let m = Metrics::new();
        m.api_call(
            &http::Method::GET,
            &"/api/v1/pods?watch=true".parse().unwrap(),
        );
        assert!(
            m.render()
                .contains("kiln_api_requests_total{verb=\"watch\"} 1"),
            "{}",
            m.render()
        );
    }

    #[test]
    fn the_text_names_every_metric() {
        let m = Metrics::new();
        m.transition("Failed", "StepFailed");
        m.finished("Succeeded", Duration::from_secs(42));
        m.reconciles.inc();
        let text = m.render();
        for name in [
            "kiln_build_transitions_total{phase=\"Failed\",reason=\"StepFailed\"} 1",
            "kiln_build_duration_seconds_count{result=\"Succeeded\"} 1",
            "kiln_reconciles_total 1",
            "kiln_build_queue_depth",
            "kiln_leader",
            "kiln_reconcile_duration_seconds",
            "kiln_cache_claims",
            "kiln_cache_lock_waits_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
