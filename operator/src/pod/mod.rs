//! The pods and ConfigMaps the operator creates, as pure functions of the ImageBuild, its plan
//! and the operator's configuration. Snapshot tests (`insta`) pin every profile and feature.
//!
//! What goes into a build pod, and why:
//! - `automountServiceAccountToken: false`: the worker needs no Kubernetes API access, and a
//!   Dockerfile must not reach one.
//! - The engine's state (layers, snapshots, cache mounts) on an `emptyDir`: overlayfs can be
//!   mounted there inside a user namespace, not on the container's own overlay root.
//! - Build secrets and ssh keys in projected Secret volumes, which the kubelet keeps on tmpfs;
//!   only the keys the build names are projected.
//! - Registry credentials as `kubernetes.io/dockerconfigjson` Secret volumes, one per Secret,
//!   each passed with `--registry-auth-file`.
//! - The security profile (DESIGN.md): `rootless` runs as uid 1000 without privilege, with
//!   seccomp and AppArmor unconfined so that the worker can create its own user namespaces (its
//!   steps get Kiln's own seccomp profile); `userns` runs as root in a pod user namespace
//!   (`hostUsers: false`); `privileged` only when the operator's configuration allows it.

mod caches;
pub use caches::{claim_owner, handed_over, with_caches};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, KeyToPath, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ProjectedVolumeSource,
    SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_crds::{Compression, ImageBuild, SecurityProfile};
use kube::{Resource, ResourceExt};

use crate::config::Config;
use crate::names;
use crate::result::CONTAINER;

/// The uid and gid the worker runs as in the rootless profile (the worker image's `kiln` user).
pub const WORKER_UID: i64 = 1000;

const CONTEXT_DIR: &str = "/kiln/context";
const SECRETS_DIR: &str = "/kiln/secrets";
const SSH_DIR: &str = "/kiln/ssh";
const REGISTRY_DIR: &str = "/kiln/registry";
const GIT_AUTH_DIR: &str = "/kiln/git-auth";
const STATE_DIR: &str = "/var/lib/kiln";
/// How long after its own timeout a worker is killed by the kubelet.
const DEADLINE_MARGIN_SECONDS: i64 = 60;

/// What every pod of one run is built from.
pub struct Inputs<'a> {
    pub build: &'a ImageBuild,
    pub run: &'a str,
    pub config: &'a Config,
    /// The revision the plan resolved (a Git commit), so the build uses exactly what was planned.
    pub revision: Option<&'a str>,
}

impl Inputs<'_> {
    fn profile(&self) -> SecurityProfile {
        self.build.spec.security_profile
    }

    fn name(&self) -> String {
        self.build.name_any()
    }

    fn labels(&self, role: &str, attempt: Option<i32>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (
                names::LABEL_BUILD_UID.to_string(),
                self.build.uid().unwrap_or_default(),
            ),
            (names::LABEL_RUN.to_string(), self.run.to_string()),
            (names::LABEL_ROLE.to_string(), role.to_string()),
            (
                names::LABEL_MANAGED_BY.to_string(),
                names::MANAGER.to_string(),
            ),
            (names::LABEL_COMPONENT.to_string(), format!("{role}-pod")),
        ]);
        let name = self.name();
        if names::fits_label(&name) {
            labels.insert(names::LABEL_BUILD.to_string(), name);
        }
        if let Some(a) = attempt {
            labels.insert(names::LABEL_ATTEMPT.to_string(), a.to_string());
        }
        labels
    }

    fn meta(&self, name: String, role: &str, attempt: Option<i32>) -> ObjectMeta {
        let mut annotations = BTreeMap::new();
        if let Some(token) = self.build.annotations().get(names::ANNOTATION_REBUILD) {
            annotations.insert(names::ANNOTATION_REBUILD.to_string(), token.clone());
        }
        if self.profile() != SecurityProfile::Privileged {
            // Kubernetes before 1.30 reads AppArmor from this annotation; the worker creates
            // user namespaces and mounts, which the default AppArmor profile forbids.
            annotations.insert(
                format!("container.apparmor.security.beta.kubernetes.io/{CONTAINER}"),
                "unconfined".to_string(),
            );
        }
        ObjectMeta {
            name: Some(name),
            namespace: self.build.namespace(),
            labels: Some(self.labels(role, attempt)),
            annotations: Some(annotations),
            owner_references: self.build.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        }
    }

    /// The context argument and the volumes that carry the context.
    fn context(&self) -> (String, Vec<Volume>, Vec<VolumeMount>, Vec<String>) {
        let source = &self.build.spec.source;
        let mount = |name: &str, read_only: bool| VolumeMount {
            name: name.to_string(),
            mount_path: CONTEXT_DIR.to_string(),
            read_only: Some(read_only),
            ..Default::default()
        };
        // The kubelet writes ConfigMap files through a `..data` symlink; the directory it points
        // at holds the files themselves, so that is the context (no symlink leaves it).
        let config_map_dir = format!("{CONTEXT_DIR}/..data");
        if let Some(inline) = &source.inline {
            let cm = names::context_config_map(&self.name(), self.run);
            let items = inline
                .files
                .keys()
                .map(|path| KeyToPath {
                    key: inline_key(path),
                    path: path.clone(),
                    mode: None,
                })
                .collect();
            (
                config_map_dir,
                vec![config_map_volume("context", &cm, items)],
                vec![mount("context", true)],
                vec![],
            )
        } else if let Some(cm) = &source.config_map {
            // Keys name paths with `/` written as `__`; the items put them back in place. The
            // item list comes from the ConfigMap's keys, which the operator read to plan.
            (
                config_map_dir,
                vec![config_map_volume("context", &cm.name, vec![])],
                vec![mount("context", true)],
                vec![],
            )
        } else if let Some(pvc) = &source.pvc {
            let dir = match pvc.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) => format!("{CONTEXT_DIR}/{}", sub.trim_matches('/')),
                None => CONTEXT_DIR.to_string(),
            };
            (
                dir,
                vec![Volume {
                    name: "context".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: pvc.claim_name.clone(),
                        read_only: Some(true),
                    }),
                    ..Default::default()
                }],
                vec![mount("context", true)],
                vec![],
            )
        } else if let Some(git) = &source.git {
            // BuildKit's Git context syntax: URL#REF:SUBDIR. The plan resolved the ref to a
            // commit; the build fetches exactly that commit.
            let rev = self
                .revision
                .or(git.revision.as_deref())
                .unwrap_or_default();
            let sub = git.sub_path.as_deref().unwrap_or_default();
            let mut arg = git.url.clone();
            if !rev.is_empty() || !sub.is_empty() {
                arg = format!("{arg}#{rev}");
                if !sub.is_empty() {
                    arg = format!("{arg}:{}", sub.trim_matches('/'));
                }
            }
            let mut volumes = vec![];
            let mut mounts = vec![];
            // The URL is Git whatever its form (https://host/org/repo without .git too).
            let mut flags = vec!["--context-type=git".to_string()];
            if let Some(secret) = &git.secret_ref {
                volumes.push(secret_volume("git-auth", &secret.name, None));
                mounts.push(read_only_mount("git-auth", GIT_AUTH_DIR));
                flags.push(format!("--git-auth-dir={GIT_AUTH_DIR}"));
            }
            (arg, volumes, mounts, flags)
        } else if let Some(url) = &source.url {
            // A tarball, even at a URL ending in .git.
            let mut flags = vec!["--context-type=url".to_string()];
            if let Some(sha) = &url.sha256 {
                flags.push(format!("--context-sha256={sha}"));
            }
            (url.url.clone(), vec![], vec![], flags)
        } else {
            (CONTEXT_DIR.to_string(), vec![], vec![], vec![])
        }
    }

    fn dockerfile_args(&self) -> Vec<String> {
        let spec = &self.build.spec;
        let mut args = vec![format!("--file={}", spec.dockerfile)];
        if let Some(t) = spec.target.as_deref().filter(|t| !t.is_empty()) {
            args.push(format!("--target={t}"));
        }
        for a in &spec.build_args {
            args.push(format!(
                "--build-arg={}={}",
                a.name,
                a.value.as_deref().unwrap_or_default()
            ));
        }
        args
    }

    fn security(&self) -> (Option<PodSecurityContext>, Option<SecurityContext>) {
        let unconfined = Some(SeccompProfile {
            type_: "Unconfined".to_string(),
            localhost_profile: None,
        });
        match self.profile() {
            SecurityProfile::Rootless => (
                Some(PodSecurityContext {
                    run_as_user: Some(WORKER_UID),
                    run_as_group: Some(WORKER_UID),
                    run_as_non_root: Some(true),
                    fs_group: Some(WORKER_UID),
                    seccomp_profile: unconfined.clone(),
                    ..Default::default()
                }),
                Some(SecurityContext {
                    privileged: Some(false),
                    read_only_root_filesystem: Some(true),
                    // newuidmap and newgidmap gain CAP_SETUID/CAP_SETGID from their file
                    // capabilities to write the worker's subordinate id maps; no_new_privs would
                    // forbid that, and the bounding set must keep the two.
                    allow_privilege_escalation: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: Some(vec!["SETUID".into(), "SETGID".into()]),
                    }),
                    seccomp_profile: unconfined,
                    ..Default::default()
                }),
            ),
            SecurityProfile::Userns => (
                Some(PodSecurityContext {
                    run_as_user: Some(0),
                    run_as_group: Some(0),
                    seccomp_profile: unconfined.clone(),
                    ..Default::default()
                }),
                Some(SecurityContext {
                    privileged: Some(false),
                    allow_privilege_escalation: Some(true),
                    // Root of the pod's own user namespace: these capabilities hold only over
                    // what that namespace owns. SYS_ADMIN mounts the steps' filesystems.
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: Some(
                            [
                                "CHOWN",
                                "DAC_OVERRIDE",
                                "FOWNER",
                                "FSETID",
                                "SETUID",
                                "SETGID",
                                "SETFCAP",
                                "SYS_ADMIN",
                                "SYS_CHROOT",
                                "KILL",
                            ]
                            .map(String::from)
                            .to_vec(),
                        ),
                    }),
                    seccomp_profile: unconfined,
                    ..Default::default()
                }),
            ),
            SecurityProfile::Privileged => (
                Some(PodSecurityContext {
                    run_as_user: Some(0),
                    ..Default::default()
                }),
                Some(SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                }),
            ),
        }
    }

    fn engine_args(&self) -> Vec<String> {
        match self.profile() {
            // A fresh /proc cannot be mounted under the container's masked /proc without
            // `procMount: Unmasked`; the steps share the pod's pid namespace instead.
            SecurityProfile::Rootless => vec!["--no-process-sandbox".into()],
            _ => vec![],
        }
    }

    fn pod(
        &self,
        meta: ObjectMeta,
        args: Vec<String>,
        volumes: Vec<Volume>,
        mounts: Vec<VolumeMount>,
        deadline: Option<i64>,
        resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    ) -> Pod {
        let spec = &self.build.spec;
        let config = self.config;
        let (pod_security, container_security) = self.security();
        let mut node_selector = config.defaults.node_selector.clone();
        node_selector.extend(spec.node_selector.clone());
        let mut tolerations = config.defaults.tolerations.clone();
        tolerations.extend(spec.tolerations.clone());
        let mut env = vec![EnvVar {
            name: "KILN_CACHE_DIR".into(),
            value: Some(format!("{STATE_DIR}/state")),
            value_from: None,
        }];
        env.extend(config.worker_env.iter().map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            value_from: None,
        }));
        let mut volumes = volumes;
        volumes.push(Volume {
            name: "state".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: config.defaults.state_size_limit.clone().map(Quantity),
            }),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        let mut mounts = mounts;
        mounts.push(VolumeMount {
            name: "state".into(),
            mount_path: STATE_DIR.into(),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        });
        Pod {
            metadata: meta,
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                service_account_name: spec.service_account_name.clone(),
                active_deadline_seconds: deadline,
                termination_grace_period_seconds: Some(30),
                node_selector: (!node_selector.is_empty()).then_some(node_selector),
                tolerations: (!tolerations.is_empty()).then_some(tolerations),
                security_context: pod_security,
                host_users: (self.profile() == SecurityProfile::Userns).then_some(false),
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image: Some(config.worker_image.clone()),
                    image_pull_policy: config.worker_image_pull_policy.clone(),
                    args: Some(args),
                    env: Some(env),
                    resources,
                    security_context: container_security,
                    volume_mounts: Some(mounts),
                    termination_message_path: Some("/dev/termination-log".into()),
                    termination_message_policy: Some("File".into()),
                    ..Default::default()
                }],
                volumes: Some(volumes),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// The build pod of one attempt.
pub fn build_pod(inputs: &Inputs<'_>, attempt: i32) -> Pod {
    let spec = &inputs.build.spec;
    let config = inputs.config;
    let name = names::build_pod(&inputs.name(), inputs.run, attempt);
    let (context, mut volumes, mut mounts, context_flags) = inputs.context();

    let mut args = vec![
        "build".to_string(),
        "--progress=plain".into(),
        "--result-file=/dev/termination-log".into(),
        "--push".into(),
    ];
    // The worker stops itself at spec.timeout and reports it; the kubelet's deadline is the
    // backstop, a minute later, for a worker that cannot.
    let timeout = kiln_crds::duration::parse(&spec.timeout).ok();
    if let Some(t) = timeout {
        args.push(format!("--timeout={}s", t.as_secs().max(1)));
    }
    args.extend(inputs.engine_args());
    args.push(format!("--tag={}", spec.output.image));
    let reference = kiln_crds::reference::Reference::parse(&spec.output.image).ok();
    for tag in &spec.output.additional_tags {
        if let Some(r) = &reference {
            args.push(format!("--tag={}", r.with_tag(tag)));
        }
    }
    args.extend(inputs.dockerfile_args());
    for (k, v) in &spec.labels {
        args.push(format!("--label={k}={v}"));
    }
    let compression = match spec.output.compression.unwrap_or_default() {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Uncompressed => "uncompressed",
    };
    args.push(format!("--compression={compression}"));
    let mut insecure: Vec<String> = config.insecure_registries.clone();
    if spec.output.insecure
        && let Some(r) = &reference
    {
        insecure.push(r.api_host().to_string());
    }
    if let Some(cache) = &spec.cache {
        if cache.no_cache {
            args.push("--no-cache".into());
        }
        if let Some(reg) = &cache.registry {
            let mode = match reg.mode {
                kiln_crds::CacheMode::Min => "min",
                kiln_crds::CacheMode::Max => "max",
            };
            args.push(format!("--cache-from=type=registry,ref={}", reg.reference));
            args.push(format!(
                "--cache-to=type=registry,ref={},mode={mode},ignore-error=true",
                reg.reference
            ));
            if spec.output.insecure
                && let Ok(r) = kiln_crds::reference::Reference::parse(&reg.reference)
            {
                insecure.push(r.api_host().to_string());
            }
        }
    }
    insecure.sort();
    insecure.dedup();
    for host in insecure {
        args.push(format!("--insecure-registry={host}"));
    }

    // Build secrets: one projected volume, each key at the path of its id.
    if !spec.secrets.is_empty() {
        let sources = spec
            .secrets
            .iter()
            .map(|s| VolumeProjection {
                secret: Some(SecretProjection {
                    name: s.secret_ref.name.clone(),
                    items: Some(vec![KeyToPath {
                        key: s.secret_ref.key.clone().unwrap_or_else(|| s.id.clone()),
                        path: s.id.clone(),
                        mode: None,
                    }]),
                    // A missing key leaves the file out: the worker then fails the step that
                    // needs it with MissingSecret, naming the id, instead of the pod hanging in
                    // ContainerCreating. Missing Secrets are caught before the pod exists.
                    optional: Some(true),
                }),
                ..Default::default()
            })
            .collect();
        volumes.push(projected_volume("secrets", sources));
        mounts.push(read_only_mount("secrets", SECRETS_DIR));
        args.push(format!("--secrets-dir={SECRETS_DIR}"));
    }
    if !spec.ssh.is_empty() {
        let sources: Vec<VolumeProjection> = spec
            .ssh
            .iter()
            .map(|s| VolumeProjection {
                secret: Some(SecretProjection {
                    name: s.secret_ref.name.clone(),
                    items: Some(vec![KeyToPath {
                        key: s
                            .secret_ref
                            .key
                            .clone()
                            .unwrap_or_else(|| "ssh-privatekey".to_string()),
                        path: s.id.clone(),
                        mode: None,
                    }]),
                    optional: Some(true),
                }),
                ..Default::default()
            })
            .collect();
        // known_hosts lines are not secret: they travel in a pod annotation, which the same
        // projected volume turns into a file (no extra object to create or clean up).
        let known_hosts: Vec<VolumeProjection> = spec
            .ssh
            .iter()
            .enumerate()
            .filter(|(_, s)| s.known_hosts.is_some())
            .map(|(i, _)| VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: known_hosts_path(i),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: format!(
                                "metadata.annotations['{}']",
                                names::known_hosts_annotation(i)
                            ),
                            api_version: None,
                        }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            })
            .collect();
        volumes.push(projected_volume(
            "ssh",
            sources.into_iter().chain(known_hosts).collect(),
        ));
        mounts.push(read_only_mount("ssh", SSH_DIR));
        for (i, s) in spec.ssh.iter().enumerate() {
            args.push(format!("--ssh={}={SSH_DIR}/{}", s.id, s.id));
            if s.known_hosts.is_some() {
                args.push(format!(
                    "--ssh-known-hosts={}={SSH_DIR}/{}",
                    s.id,
                    known_hosts_path(i)
                ));
            }
        }
    }
    // Registry credentials: the push secret first, then the pull secrets.
    let mut registry_secrets: Vec<String> = Vec::new();
    if let Some(push) = spec
        .output
        .push_secret_ref
        .as_ref()
        .map(|r| r.name.clone())
        .or_else(|| config.defaults.push_secret_name.clone())
    {
        registry_secrets.push(push);
    }
    for r in &spec.pull_secret_refs {
        if !registry_secrets.contains(&r.name) {
            registry_secrets.push(r.name.clone());
        }
    }
    for (i, secret) in registry_secrets.iter().enumerate() {
        let volume = format!("registry-{i}");
        volumes.push(secret_volume(
            &volume,
            secret,
            Some(vec![KeyToPath {
                key: ".dockerconfigjson".into(),
                path: "config.json".into(),
                mode: None,
            }]),
        ));
        let dir = format!("{REGISTRY_DIR}/{i}");
        mounts.push(read_only_mount(&volume, &dir));
        args.push(format!("--registry-auth-file={dir}/config.json"));
    }
    args.extend(context_flags);
    args.push(context);

    let deadline = timeout.map(|d| d.as_secs().max(1) as i64 + DEADLINE_MARGIN_SECONDS);
    let resources = spec
        .resources
        .clone()
        .or_else(|| config.defaults.resources.clone());
    let mut meta = inputs.meta(name, names::ROLE_BUILD, Some(attempt));
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    for (i, s) in spec.ssh.iter().enumerate() {
        if let Some(lines) = &s.known_hosts {
            annotations.insert(names::known_hosts_annotation(i), lines.clone());
        }
    }
    inputs.pod(meta, args, volumes, mounts, deadline, resources)
}

/// Where the known_hosts lines of `spec.ssh[i]` appear, under the ssh directory.
fn known_hosts_path(i: usize) -> String {
    format!("known-hosts/{i}")
}

/// The plan pod of a run: `kiln plan --json` on the fetched context.
pub fn plan_pod(inputs: &Inputs<'_>) -> Pod {
    let name = names::plan_pod(&inputs.name(), inputs.run);
    let (context, volumes, mounts, context_flags) = inputs.context();
    let mut args = vec![
        "plan".to_string(),
        "--json".into(),
        "--result-file=/dev/termination-log".into(),
    ];
    args.extend(inputs.dockerfile_args());
    args.extend(context_flags);
    args.push(context);
    let meta = inputs.meta(name, names::ROLE_PLAN, None);
    let resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..Default::default()
    });
    let deadline = Some(inputs.config.plan_timeout.as_secs().max(1) as i64);
    inputs.pod(meta, args, volumes, mounts, deadline, resources)
}

/// The ConfigMap that carries an inline context into the pods of a run.
pub fn context_config_map(inputs: &Inputs<'_>) -> Option<ConfigMap> {
    let inline = inputs.build.spec.source.inline.as_ref()?;
    let name = names::context_config_map(&inputs.name(), inputs.run);
    let mut meta = inputs.meta(name, "context", None);
    meta.annotations = None;
    Some(ConfigMap {
        metadata: meta,
        data: Some(
            inline
                .files
                .iter()
                .map(|(path, text)| (inline_key(path), text.clone()))
                .collect(),
        ),
        immutable: Some(true),
        ..Default::default()
    })
}

/// Where cache claims are mounted in the worker container.
const CACHES_DIR: &str = "/kiln/caches";

/// The items that place a user's ConfigMap context keys (`a__b`) at their paths (`a/b`).
pub fn config_map_items(keys: &[String]) -> Vec<KeyToPath> {
    keys.iter()
        .map(|k| KeyToPath {
            key: k.clone(),
            path: crate::plan::key_to_path(k),
            mode: None,
        })
        .collect()
}

/// Sets the items of the context volume of a pod whose source is a user's ConfigMap.
pub fn with_config_map_items(mut pod: Pod, keys: &[String]) -> Pod {
    if let Some(spec) = pod.spec.as_mut()
        && let Some(volumes) = spec.volumes.as_mut()
        && let Some(v) = volumes.iter_mut().find(|v| v.name == "context")
        && let Some(cm) = v.config_map.as_mut()
    {
        cm.items = Some(config_map_items(keys));
    }
    pod
}

/// A ConfigMap key for an inline file: `/` is not allowed in keys, and `__` stands for it, as
/// in ConfigMap sources.
fn inline_key(path: &str) -> String {
    path.trim_start_matches("./").replace('/', "__")
}

fn config_map_volume(name: &str, config_map: &str, items: Vec<KeyToPath>) -> Volume {
    Volume {
        name: name.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_string(),
            items: (!items.is_empty()).then_some(items),
            default_mode: Some(0o644),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            items,
            // Readable by the worker's group (fsGroup) only.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

fn projected_volume(name: &str, sources: Vec<VolumeProjection>) -> Volume {
    Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
        }),
        ..Default::default()
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..Default::default()
    }
}
