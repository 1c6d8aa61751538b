//! The invalid manifests under `tests/fixtures/invalid/` are rejected exactly by the layers
//! their header names: `schema` (the structural schema, so also Kubernetes 1.20), `cel` (the
//! CEL rules, enforced from Kubernetes 1.25 and by the operator), and always `validate` (the
//! operator's validation function). A layer not named must accept the manifest, so the labels
//! stay honest.

mod common;

use common::{documents, repo_root, schema_errors, yaml_files};

struct Case {
    name: String,
    rejected_by: Vec<String>,
    path: String,
    doc: serde_json::Value,
}

fn cases() -> Vec<Case> {
    yaml_files(&repo_root().join("tests/fixtures/invalid"))
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{} lacks '# {key}:'", file.display()))
                    .to_string()
            };
            Case {
                name: file.file_name().unwrap().to_string_lossy().into(),
                rejected_by: header("rejected-by")
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                path: header("path"),
                doc: documents(&file).remove(0),
            }
        })
        .collect()
}

#[test]
fn validation_function_rejects_every_invalid_manifest_naming_the_field() {
    for case in cases() {
        let errors = match serde_json::from_value::<kiln_crds::ImageBuild>(case.doc.clone()) {
            // A manifest our types cannot even read is rejected by the operator at decode time.
            Err(e) => {
                assert!(
                    case.rejected_by.contains(&"schema".to_string()),
                    "{}: decode error {e} but the schema accepts it",
                    case.name
                );
                continue;
            }
            Ok(build) => kiln_crds::validate(&build.spec),
        };
        let wants = case.rejected_by.contains(&"validate".to_string());
        match errors {
            Ok(()) => assert!(!wants, "{}: validate() accepted it", case.name),
            Err(errors) => {
                assert!(
                    wants,
                    "{}: validate() rejected it but the header does not say so: {errors:?}",
                    case.name
                );
                assert!(
                    errors.iter().any(|e| e.path.starts_with(&case.path)),
                    "{}: no error at {}: {errors:?}",
                    case.name,
                    case.path
                );
            }
        }
    }
}

#[test]
fn schema_rejects_exactly_the_manifests_marked_schema() {
    for case in cases() {
        let errors = schema_errors(&case.doc);
        let wants = case.rejected_by.contains(&"schema".to_string());
        assert_eq!(
            !errors.is_empty(),
            wants,
            "{}: schema errors {errors:?}",
            case.name
        );
    }
}

#[test]
fn cel_rules_reject_exactly_the_manifests_marked_cel() {
    for case in cases() {
        let result = kiln_crds::validate_cel(&case.doc);
        let wants = case.rejected_by.contains(&"cel".to_string());
        assert_eq!(
            result.is_err(),
            wants,
            "{}: CEL result {result:?}",
            case.name
        );
    }
}

#[test]
fn validation_reports_every_problem_at_once() {
    let doc: serde_json::Value = serde_saphyr::from_str(
        r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: {name: many}
spec:
  source: {}
  output: {image: "Bad Image"}
  secrets:
    - {id: a, secretRef: {name: s}}
    - {id: a, secretRef: {name: s}}
  timeout: forever
  cache: {defaultSize: "-1"}
"#,
    )
    .unwrap();
    let build: kiln_crds::ImageBuild = serde_json::from_value(doc).unwrap();
    let errors = kiln_crds::validate(&build.spec).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.source",
            "spec.output.image",
            "spec.secrets[1].id",
            "spec.cache.defaultSize",
            "spec.timeout"
        ]
    );
}
