//! Leader election: of several replicas, one reconciles; the others wait to take over.
//!
//! The lease is a `coordination.k8s.io` Lease in the operator's namespace, held through
//! `kube-lease-manager` with server-side apply, so two replicas can never both hold it. A
//! replica that loses the lease stops reconciling and exits, and Kubernetes restarts it as a
//! standby: simpler and safer than a controller that tries to wind down and resume.

use std::sync::Arc;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How long a lease holds without renewal, and how early the holder renews it.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

/// Waits until this replica holds the lease. The receiver turns `false` if it is lost.
pub async fn acquire(
    client: Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    metrics: Arc<Metrics>,
) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .build()
        .await?;
    let (mut rx, _task) = manager.watch().await;
    tracing::info!(lease, namespace, identity, "waiting for the leader lease");
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            break;
        }
    }
    metrics.leader.set(1);
    tracing::info!(lease, identity, "holding the leader lease");
    Ok(rx)
}

/// Resolves when the lease is lost.
pub async fn lost(mut rx: watch::Receiver<bool>) {
    loop {
        if !*rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
