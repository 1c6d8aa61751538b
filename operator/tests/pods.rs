//! The pods the operator creates, pinned as snapshots (`cargo insta review` after a deliberate
//! change), plus the properties that must hold whatever the snapshot says.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kiln_crds::{
    BuildArg, BuildSecret, BuildSource, BuildSsh, CacheSpec, ConfigMapSource, GitSource,
    LocalObjectReference, PvcSource, RegistryCache, SecretKeyRef, SecurityProfile, UrlSource,
};
use kiln_operator::config::Config;
use kiln_operator::pod::{self, Inputs};

fn make(b: &kiln_crds::ImageBuild, config: &Config) -> Pod {
    pod::build_pod(
        &Inputs {
            build: b,
            run: "g1",
            config,
            revision: None,
        },
        1,
    )
}

fn rich() -> kiln_crds::ImageBuild {
    let mut s = spec();
    s.source = BuildSource {
        inline: Some(inline(&[
            ("Dockerfile", "FROM busybox\n"),
            ("src/app.sh", "echo hi\n"),
        ])),
        ..Default::default()
    };
    s.target = Some("app".into());
    s.build_args = vec![BuildArg {
        name: "VERSION".into(),
        value: Some("1.2".into()),
    }];
    s.output.additional_tags = vec!["latest".into()];
    s.output.push_secret_ref = Some(LocalObjectReference {
        name: "push-creds".into(),
    });
    s.pull_secret_refs = vec![LocalObjectReference {
        name: "pull-creds".into(),
    }];
    s.secrets = vec![BuildSecret {
        id: "npmrc".into(),
        secret_ref: SecretKeyRef {
            name: "npm".into(),
            key: Some(".npmrc".into()),
        },
    }];
    s.ssh = vec![BuildSsh {
        id: "default".into(),
        secret_ref: SecretKeyRef {
            name: "deploy-key".into(),
            key: None,
        },
        known_hosts: None,
    }];
    s.cache = Some(CacheSpec {
        registry: Some(RegistryCache {
            reference: "registry.example.com/team/app:cache".into(),
            mode: kiln_crds::CacheMode::Max,
        }),
        ..Default::default()
    });
    s.timeout = "45m".into();
    build_with(s)
}

#[test]
fn rootless_pod_with_every_input() {
    let p = make(&rich(), &config());
    insta::assert_yaml_snapshot!(p);
}

#[test]
fn userns_pod() {
    let mut b = build();
    b.spec.security_profile = SecurityProfile::Userns;
    insta::assert_yaml_snapshot!(make(&b, &config()).spec.unwrap().security_context);
    let c = make(&b, &config()).spec.unwrap();
    assert_eq!(c.host_users, Some(false));
    insta::assert_yaml_snapshot!(c.containers[0].security_context);
}

#[test]
fn privileged_pod() {
    let mut b = build();
    b.spec.security_profile = SecurityProfile::Privileged;
    let p = make(&b, &config());
    let c = &p.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    assert!(
        !c.args
            .as_ref()
            .unwrap()
            .contains(&"--no-process-sandbox".to_string())
    );
}

#[test]
fn plan_pod_for_a_git_source() {
    let mut s = spec();
    s.source = BuildSource {
        git: Some(GitSource {
            url: "https://git.example.com/team/app.git".into(),
            revision: Some("v1.2.3".into()),
            sub_path: Some("services/api".into()),
            secret_ref: Some(LocalObjectReference {
                name: "git-creds".into(),
            }),
        }),
        ..Default::default()
    };
    let b = build_with(s);
    let p = pod::plan_pod(&Inputs {
        build: &b,
        run: "g1",
        config: &config(),
        revision: None,
    });
    insta::assert_yaml_snapshot!(p);
}

#[test]
fn context_sources_become_arguments_and_volumes() {
    let cases: Vec<(BuildSource, &str)> = vec![
        (
            BuildSource {
                config_map: Some(ConfigMapSource { name: "ctx".into() }),
                ..Default::default()
            },
            "/kiln/context/..data",
        ),
        (
            BuildSource {
                pvc: Some(PvcSource {
                    claim_name: "sources".into(),
                    sub_path: Some("app/".into()),
                }),
                ..Default::default()
            },
            "/kiln/context/app",
        ),
        (
            BuildSource {
                url: Some(UrlSource {
                    url: "https://example.com/ctx.tar.gz".into(),
                    sha256: Some("a".repeat(64)),
                }),
                ..Default::default()
            },
            "https://example.com/ctx.tar.gz",
        ),
    ];
    for (source, want) in cases {
        let b = build_with(with_source(spec(), source));
        let p = make(&b, &config());
        let args = p.spec.unwrap().containers[0].args.clone().unwrap();
        assert_eq!(args.last().unwrap(), want);
    }
}

#[test]
fn git_and_url_sources_say_what_their_url_is() {
    let git = BuildSource {
        git: Some(GitSource {
            url: "https://git.example.com/team/app".into(),
            revision: Some("main".into()),
            sub_path: None,
            secret_ref: None,
        }),
        ..Default::default()
    };
    let b = build_with(with_source(spec(), git));
    // The plan resolved the branch: the build fetches exactly that commit.
    let commit = "c".repeat(40);
    let p = pod::build_pod(
        &Inputs {
            build: &b,
            run: "r1",
            config: &config(),
            revision: Some(&commit),
        },
        1,
    );
    let args = p.spec.unwrap().containers[0].args.clone().unwrap();
    assert_eq!(
        args.last().unwrap(),
        &format!("https://git.example.com/team/app#{commit}")
    );
    assert!(args.contains(&"--context-type=git".to_string()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--git-auth-dir")));

    let url = BuildSource {
        url: Some(UrlSource {
            url: "https://example.com/ctx.tar.gz".into(),
            sha256: Some("a".repeat(64)),
        }),
        ..Default::default()
    };
    let b = build_with(with_source(spec(), url));
    let args = make(&b, &config()).spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--context-type=url".to_string()), "{args:?}");
    assert!(
        args.contains(&format!("--context-sha256={}", "a".repeat(64))),
        "{args:?}"
    );
}

#[test]
fn config_map_keys_are_placed_at_their_paths() {
    let b = build_with(with_source(
        spec(),
        BuildSource {
            config_map: Some(ConfigMapSource { name: "ctx".into() }),
            ..Default::default()
        },
    ));
    let p = pod::with_config_map_items(
        make(&b, &config()),
        &["Dockerfile".into(), "src__main.go".into()],
    );
    let volumes = p.spec.unwrap().volumes.unwrap();
    let cm = volumes
        .iter()
        .find(|v| v.name == "context")
        .unwrap()
        .config_map
        .clone()
        .unwrap();
    let items: Vec<_> = cm
        .items
        .unwrap()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    assert_eq!(
        items,
        [
            ("Dockerfile".to_string(), "Dockerfile".to_string()),
            ("src__main.go".to_string(), "src/main.go".to_string())
        ]
    );
}

/// What must hold for every pod, whatever the snapshots say.
#[test]
fn every_pod_is_tokenless_owned_and_never_privileged_by_default() {
    for b in [build(), rich()] {
        let p = make(&b, &config());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ImageBuild", Some(true))
        );
        let sc = spec.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(1000));
        let c = &spec.containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(false));
        // Build secrets and keys are on memory-backed volumes the kubelet manages, never in
        // the pod's environment or arguments.
        for v in spec.volumes.as_ref().unwrap() {
            assert!(v.host_path.is_none(), "{}", v.name);
        }
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("hostPath"));
    }
    let p = make(&rich(), &config());
    let args = p.spec.unwrap().containers[0].args.clone().unwrap();
    for want in [
        "--tag=registry.example.com/team/app:1.0",
        "--tag=registry.example.com/team/app:latest",
        "--secrets-dir=/kiln/secrets",
        "--ssh=default=/kiln/ssh/default",
        "--registry-auth-file=/kiln/registry/0/config.json",
        "--registry-auth-file=/kiln/registry/1/config.json",
        "--target=app",
        "--build-arg=VERSION=1.2",
        "--no-process-sandbox",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
}

#[test]
fn defaults_from_the_configuration_apply() {
    let mut config = config();
    config.defaults.state_size_limit = Some("20Gi".into());
    config.defaults.node_selector = [("pool".to_string(), "builds".to_string())].into();
    config.insecure_registries = vec!["10.0.0.1:5000".into()];
    config.worker_image = "reg/kiln-worker:9".into();
    let mut b = build();
    b.spec.node_selector = [("disk".to_string(), "ssd".to_string())].into();
    let p = make(&b, &config);
    let spec = p.spec.unwrap();
    assert_eq!(spec.node_selector.unwrap().len(), 2);
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("reg/kiln-worker:9")
    );
    assert_eq!(spec.active_deadline_seconds, Some(1860));
    let state = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "state")
        .unwrap();
    assert_eq!(state.empty_dir.unwrap().size_limit.unwrap().0, "20Gi");
    assert!(
        spec.containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--insecure-registry=10.0.0.1:5000".to_string())
    );
}

#[test]
fn the_inline_context_config_map() {
    let b = rich();
    let cm = pod::context_config_map(&Inputs {
        build: &b,
        run: "g1",
        config: &config(),
        revision: None,
    })
    .unwrap();
    insta::assert_yaml_snapshot!(cm);
}

#[test]
fn ssh_known_hosts_reach_the_worker_through_an_annotation() {
    let mut b = rich();
    let lines = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\n";
    b.spec.ssh.push(BuildSsh {
        id: "deploy".into(),
        secret_ref: SecretKeyRef {
            name: "deploy-key-2".into(),
            key: None,
        },
        known_hosts: Some(lines.into()),
    });
    let p = make(&b, &config());
    let annotations = p.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("ssh.kiln.dev/known-hosts-1")
            .map(String::as_str),
        Some(lines)
    );
    // The first key has no known_hosts: no annotation, no flag.
    assert!(!annotations.contains_key("ssh.kiln.dev/known-hosts-0"));
    let spec = p.spec.unwrap();
    let args = spec.containers[0].args.clone().unwrap();
    let flags: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--ssh-known-hosts="))
        .collect();
    assert_eq!(flags, ["--ssh-known-hosts=deploy=/kiln/ssh/known-hosts/1"]);
    let ssh = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "ssh")
        .unwrap();
    let projected = ssh.projected.unwrap().sources.unwrap();
    let field = projected
        .iter()
        .find_map(|s| s.downward_api.as_ref())
        .and_then(|d| d.items.as_ref())
        .map(|items| {
            (
                items[0].path.clone(),
                items[0].field_ref.clone().unwrap().field_path,
            )
        });
    assert_eq!(
        field,
        Some((
            "known-hosts/1".to_string(),
            "metadata.annotations['ssh.kiln.dev/known-hosts-1']".to_string()
        ))
    );
}

#[test]
fn the_init_container_hands_over_only_claims_not_yet_the_workers() {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
    use kiln_operator::cache::{Choice, Need};
    use kiln_worker::plan::step::Sharing;
    let choice = |claim: &str, owner: Option<&str>| {
        let need = Need {
            key: format!("key-{claim}"),
            id: claim.to_string(),
            sharing: Sharing::Shared,
        };
        let mount = kiln_operator::plan::CacheUse {
            id: claim.to_string(),
            target: format!("/{claim}"),
            sharing: Sharing::Shared,
            ..Default::default()
        };
        let c = Choice {
            need,
            claim: claim.to_string(),
            create: None,
            node: None,
            owner: owner.map(str::to_string),
        };
        (c, mount)
    };
    let config = Config::default();
    let caches = [choice("warm", Some("1000:1000")), choice("fresh", None)];
    let p = pod::with_caches(make(&build(), &config), &caches, &config);
    let spec = p.spec.as_ref().unwrap();
    // The worker mounts both; the init container only the claim it must hand over.
    let worker_mounts: Vec<&str> = spec.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(
        worker_mounts.contains(&"/kiln/caches/warm"),
        "{worker_mounts:?}"
    );
    assert!(
        worker_mounts.contains(&"/kiln/caches/fresh"),
        "{worker_mounts:?}"
    );
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        init.args.as_ref().unwrap(),
        &["prepare-volumes", "--owner=1000:1000", "/kiln/caches/fresh"]
    );
    // Before it ends, nothing is handed over; after it exits 0, exactly the claim it mounts.
    assert!(pod::handed_over(&p).is_empty());
    let mut done = p.clone();
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        init_container_statuses: Some(vec![ContainerStatus {
            name: "cache-owner".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    assert_eq!(pod::handed_over(&done), vec!["fresh".to_string()]);
    // Both already the worker's: no init container.
    let caches = [
        choice("warm", Some("1000:1000")),
        choice("other", Some("1000:1000")),
    ];
    let p = pod::with_caches(make(&build(), &config), &caches, &config);
    assert!(p.spec.as_ref().unwrap().init_containers.is_none());
}
