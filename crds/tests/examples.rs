//! Every ImageBuild in `examples/` (and `examples/gitops/app/`) parses with our types, passes our validation, its CEL rules
//! and the generated schema.

mod common;

use common::{documents, repo_root, schema_errors, yaml_files};

#[test]
fn examples_cover_every_source_kind_and_validate() {
    let mut kinds = std::collections::BTreeSet::new();
    let mut with_secrets = false;
    let mut with_ssh = false;
    let mut with_cache_volumes = false;
    let gitops = yaml_files(&repo_root().join("examples/gitops/app"));
    for path in yaml_files(&repo_root().join("examples"))
        .into_iter()
        .chain(gitops)
    {
        for doc in documents(&path) {
            if doc["kind"] != "ImageBuild" {
                continue;
            }
            let name = format!("{} ({})", path.display(), doc["metadata"]["name"]);
            let build: kiln_crds::ImageBuild = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
            if let Err(errors) = kiln_crds::validate(&build.spec) {
                panic!(
                    "{name} does not validate: {}",
                    kiln_crds::validate::summarize(&errors)
                );
            }
            if let Err(errors) = kiln_crds::validate_cel(&doc) {
                panic!(
                    "{name} fails a CEL rule: {}",
                    kiln_crds::validate::summarize(&errors)
                );
            }
            let source = &build.spec.source;
            for (kind, set) in [
                ("git", source.git.is_some()),
                ("configMap", source.config_map.is_some()),
                ("inline", source.inline.is_some()),
                ("url", source.url.is_some()),
                ("pvc", source.pvc.is_some()),
            ] {
                if set {
                    kinds.insert(kind);
                }
            }
            with_secrets |= !build.spec.secrets.is_empty();
            with_ssh |= !build.spec.ssh.is_empty();
            with_cache_volumes |= build
                .spec
                .cache
                .as_ref()
                .is_some_and(|c| !c.volumes.is_empty());
        }
    }
    assert_eq!(
        kinds.len(),
        5,
        "examples must cover every source kind, found {kinds:?}"
    );
    assert!(
        with_secrets && with_ssh && with_cache_volumes,
        "examples must show secrets, ssh and cache volumes"
    );
}

#[test]
fn examples_match_the_generated_schema() {
    let gitops = yaml_files(&repo_root().join("examples/gitops/app"));
    for path in yaml_files(&repo_root().join("examples"))
        .into_iter()
        .chain(gitops)
    {
        for doc in documents(&path) {
            if doc["kind"] != "ImageBuild" {
                continue;
            }
            let errors = schema_errors(&doc);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        }
    }
}

#[test]
fn the_schema_check_itself_catches_a_typo() {
    let mut doc = documents(&repo_root().join("examples/url.yaml")).remove(0);
    doc["spec"]["output"]["imgae"] = "oops".into();
    assert!(!schema_errors(&doc).is_empty());
}
