//! Carrying out a decision: the actions in order (objects created, status applied, Events
//! published), each against the API server.

use super::*;

/// Carries out the actions in order; returns the build pod and the claims it created.
pub(super) async fn carry_out(
    build: &ImageBuild,
    ctx: &Context,
    actions: &[Action],
) -> Result<Created, Error> {
    let ns = build.namespace().ok_or(Error::NoNamespace)?;
    let name = build.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut created = Created::default();
    for action in actions {
        match action {
            Action::CreateConfigMap(cm) => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                ctx.metrics.write("create_configmap");
                match api.create(&PostParams::default(), cm).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::CreatePod(pod) => {
                ctx.metrics.write("create_pod");
                match pods.create(&PostParams::default(), pod).await {
                    Ok(p) => {
                        info!(pod = p.name_any(), "created pod");
                        if p.labels().get(names::LABEL_ROLE).map(String::as_str)
                            == Some(names::ROLE_BUILD)
                        {
                            created.build_pod = Some(p);
                        }
                    }
                    // Created by an earlier reconcile (or a previous operator): adopt it.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        info!(pod = pod.name_any(), "adopted existing pod");
                    }
                    Err(kube::Error::Api(e)) if matches!(e.code, 403 | 422) => {
                        // Quota, admission or validation refused it: say so on the build.
                        let message = format!("creating pod {}: {}", pod.name_any(), e.message);
                        publish(
                            ctx,
                            build,
                            &decide::Event {
                                warning: true,
                                reason: reasons::POD_CREATE_FAILED.into(),
                                note: message.clone(),
                            },
                        )
                        .await;
                        return Err(kube::Error::Api(e).into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::CreateClaim(claim) => {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
                ctx.metrics.write("create_claim");
                match api.create(&PostParams::default(), claim).await {
                    Ok(c) => {
                        info!(claim = c.name_any(), "created cache claim");
                        created.claims.push(c);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::TouchClaims(claims) => {
                let now = Timestamp::now().to_string();
                let annotation = (crate::cache::ANNOTATION_LAST_USED, now.as_str());
                annotate_claims(ctx, &ns, claims, annotation, "touch_claim").await?;
            }
            Action::OwnClaims { claims, owner } => {
                let annotation = (crate::cache::ANNOTATION_OWNER, owner.as_str());
                annotate_claims(ctx, &ns, claims, annotation, "own_claim").await?;
            }
            Action::DeletePod(pod) => {
                ctx.metrics.write("delete_pod");
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                match pods.delete(pod, &dp).await {
                    Ok(_) => info!(pod, "deleted pod"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::ApplyStatus(s) => {
                ctx.metrics.write("apply_status");
                let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &ns);
                let patch = serde_json::json!({
                    "apiVersion": "kiln.dev/v1alpha1",
                    "kind": "ImageBuild",
                    "status": s,
                });
                api.patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
                if let Some(phase) = s.phase {
                    let reason = status::condition(&s.conditions, status::READY)
                        .map(|c| c.reason.clone())
                        .unwrap_or_default();
                    ctx.metrics.transition(&format!("{phase:?}"), &reason);
                }
            }
            Action::Event(ev) => {
                publish(ctx, build, ev).await;
            }
        }
    }
    Ok(created)
}

/// Sets one annotation on each claim; a claim deleted since (by hand or by GC) is skipped.
async fn annotate_claims(
    ctx: &Context,
    ns: &str,
    claims: &[String],
    (key, value): (&str, &str),
    metric: &'static str,
) -> Result<(), Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    for claim in claims {
        ctx.metrics.write(metric);
        match api
            .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) async fn publish(ctx: &Context, build: &ImageBuild, ev: &decide::Event) {
    ctx.metrics.write("event");
    let event = KubeEvent {
        type_: if ev.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ev.reason.clone(),
        note: Some(truncate(&ev.note, 1024)),
        action: ev.reason.clone(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &build.object_ref(&())).await {
        // An Event is a courtesy; failing to write one does not fail the reconcile.
        warn!(error = %e, "could not publish an Event");
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
