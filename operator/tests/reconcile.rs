//! The reconcile shell against a mock API server (tower-test): each scenario lists the exact
//! requests the operator must send, in order, and answers them as the API server would.

mod common;

use std::pin::pin;
use std::sync::Arc;

use common::*;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kiln_crds::ImageBuild;
use kiln_operator::controller::{Context, Stores, reconcile};
use kiln_operator::metrics::Metrics;
use kube::Client;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn ready_store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    // The writer must live as long as the reader is read.
    std::mem::forget(writer);
    reader
}

fn context(client: Client, builds: Vec<ImageBuild>, pods: Vec<Pod>) -> Arc<Context> {
    let stores = Stores {
        builds: ready_store(builds),
        pods: ready_store(pods),
        secrets: ready_store::<PartialObjectMeta<Secret>>(vec![]),
        config_maps: ready_store::<PartialObjectMeta<ConfigMap>>(vec![]),
        pvcs: ready_store::<PersistentVolumeClaim>(vec![]),
    };
    let (wake, _) = mpsc::unbounded_channel();
    let (synced_tx, synced) = tokio::sync::watch::channel(true);
    std::mem::forget(synced_tx);
    Arc::new(Context::new(
        client,
        config(),
        Arc::new(Metrics::new()),
        stores,
        wake,
        synced,
    ))
}

/// One expected request: its method, a path prefix, and the answer.
struct Step {
    method: Method,
    path: &'static str,
    status: StatusCode,
    body: serde_json::Value,
    /// Checks the request body.
    check: fn(&serde_json::Value),
}

fn step(method: Method, path: &'static str, body: serde_json::Value) -> Step {
    Step {
        method,
        path,
        status: StatusCode::OK,
        body,
        check: |_| {},
    }
}

async fn serve(handle: ApiHandle, steps: Vec<Step>) {
    let mut handle = pin!(handle);
    for (i, s) in steps.into_iter().enumerate() {
        let (request, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("request {i} ({} {}) never came", s.method, s.path));
        assert_eq!(request.method(), s.method, "request {i}: {}", request.uri());
        let uri = request.uri().to_string();
        assert!(
            uri.starts_with(s.path),
            "request {i}: {uri} is not {}",
            s.path
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        (s.check)(&json);
        let response = Response::builder()
            .status(s.status)
            .body(Body::from(serde_json::to_vec(&s.body).unwrap()))
            .unwrap();
        send.send_response(response);
    }
}

fn echo_status() -> serde_json::Value {
    serde_json::to_value(build()).unwrap()
}

fn not_found() -> serde_json::Value {
    serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"})
}

#[tokio::test]
async fn a_new_build_creates_its_pod_writes_status_and_an_event() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let b = build();
    let ctx = context(client, vec![b.clone()], vec![]);
    let server = tokio::spawn(serve(
        handle,
        vec![
            step(
                Method::POST,
                "/api/v1/namespaces/team/configmaps",
                serde_json::to_value(ConfigMap::default()).unwrap(),
            ),
            Step {
                check: |body| {
                    assert_eq!(body["metadata"]["name"], "app-g1-1");
                    assert_eq!(body["spec"]["automountServiceAccountToken"], false);
                },
                ..step(
                    Method::POST,
                    "/api/v1/namespaces/team/pods",
                    serde_json::to_value(build_pod(1)).unwrap(),
                )
            },
            Step {
                check: |body| {
                    assert_eq!(body["status"]["phase"], "Building");
                    assert_eq!(body["status"]["podName"], "app-g1-1");
                    assert_eq!(body["kind"], "ImageBuild");
                },
                ..step(
                    Method::PATCH,
                    "/apis/kiln.dev/v1alpha1/namespaces/team/imagebuilds/app/status?&force=true&fieldManager=kiln-operator",
                    echo_status(),
                )
            },
            Step {
                check: |body| {
                    assert_eq!(body["reason"], "Building");
                    assert_eq!(body["regarding"]["name"], "app");
                },
                ..step(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/team/events",
                    serde_json::json!({}),
                )
            },
        ],
    ));
    let action = reconcile(Arc::new(b), ctx).await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    server.await.unwrap();
}

#[tokio::test]
async fn an_existing_pod_is_adopted_not_duplicated() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let b = build();
    let ctx = context(client, vec![b.clone()], vec![]);
    let conflict = serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409,"message":"pods \"app-g1-1\" already exists"});
    let server = tokio::spawn(serve(
        handle,
        vec![
            Step {
                status: StatusCode::CONFLICT,
                ..step(
                    Method::POST,
                    "/api/v1/namespaces/team/configmaps",
                    conflict.clone(),
                )
            },
            Step {
                status: StatusCode::CONFLICT,
                ..step(Method::POST, "/api/v1/namespaces/team/pods", conflict)
            },
            step(
                Method::PATCH,
                "/apis/kiln.dev/v1alpha1/namespaces/team/imagebuilds/app/status",
                echo_status(),
            ),
            step(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/team/events",
                serde_json::json!({}),
            ),
        ],
    ));
    reconcile(Arc::new(b), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_missing_secret_is_confirmed_then_reported() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut b = build();
    b.spec.output.push_secret_ref = Some(kiln_crds::LocalObjectReference {
        name: "creds".into(),
    });
    let ctx = context(client, vec![b.clone()], vec![]);
    let server = tokio::spawn(serve(
        handle,
        vec![
            // Not in the cache: a direct read confirms it is missing.
            Step {
                status: StatusCode::NOT_FOUND,
                ..step(
                    Method::GET,
                    "/api/v1/namespaces/team/secrets/creds",
                    not_found(),
                )
            },
            Step {
                check: |body| {
                    assert_eq!(body["status"]["phase"], "Pending");
                    assert_eq!(body["status"]["conditions"][0]["reason"], "MissingSecret");
                },
                ..step(
                    Method::PATCH,
                    "/apis/kiln.dev/v1alpha1/namespaces/team/imagebuilds/app/status",
                    echo_status(),
                )
            },
            Step {
                check: |body| assert_eq!(body["type"], "Warning"),
                ..step(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/team/events",
                    serde_json::json!({}),
                )
            },
        ],
    ));
    let action = reconcile(Arc::new(b), ctx).await.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(kiln_operator::decide::WAIT_RECHECK)
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_build_without_the_finalizer_gets_it_first() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut b = build();
    b.metadata.finalizers = None;
    let ctx = context(client, vec![b.clone()], vec![]);
    let server = tokio::spawn(serve(
        handle,
        vec![Step {
            check: |body| {
                let ops = body.as_array().unwrap();
                assert!(
                    ops.iter()
                        .any(|op| op["value"] == serde_json::json!(["kiln.dev/cleanup"])),
                    "{body}"
                );
            },
            ..step(
                Method::PATCH,
                "/apis/kiln.dev/v1alpha1/namespaces/team/imagebuilds/app",
                echo_status(),
            )
        }],
    ));
    reconcile(Arc::new(b), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn deleting_a_running_build_stops_its_pod_and_releases_the_finalizer() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut b = build();
    b.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(50)));
    let ctx = context(client, vec![b.clone()], vec![running(build_pod(1))]);
    let server = tokio::spawn(serve(
        handle,
        vec![
            step(
                Method::DELETE,
                "/api/v1/namespaces/team/pods/app-g1-1",
                serde_json::to_value(build_pod(1)).unwrap(),
            ),
            Step {
                check: |body| assert!(body.to_string().contains("remove"), "{body}"),
                ..step(
                    Method::PATCH,
                    "/apis/kiln.dev/v1alpha1/namespaces/team/imagebuilds/app",
                    echo_status(),
                )
            },
        ],
    ));
    reconcile(Arc::new(b), ctx).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_running_build_with_nothing_new_sends_no_request() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut seen = observed();
    seen.pods = vec![running(build_pod(1))];
    let b = build();
    let b1 = after(&b, &kiln_operator::decide::decide(&b, &seen, &config()));
    assert_eq!(phase(&b1), Some(kiln_crds::Phase::Building));
    let ctx = context(client, vec![b1.clone()], vec![running(build_pod(1))]);
    // Any request would hang this reconcile: nobody answers.
    let action = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reconcile(Arc::new(b1), ctx),
    )
    .await
    .expect("the reconcile sent a request")
    .unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    drop(handle);
}
