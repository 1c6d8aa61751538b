//! The checked-in CRD YAML is what the types generate, and has the shape users rely on.

mod common;

use common::repo_root;

#[test]
fn checked_in_crd_yaml_is_fresh() {
    for (path, expected) in [
        ("crds/imagebuild.yaml", kiln_crds::crd_yaml()),
        (
            "charts/kiln/templates/crd.yaml",
            kiln_crds::chart::crd_template(),
        ),
    ] {
        let actual = std::fs::read_to_string(repo_root().join(path)).unwrap_or_default();
        assert!(
            actual == expected,
            "{path} is stale: run `make crds` and commit the result"
        );
    }
    assert!(
        !repo_root().join("charts/kiln/crds").exists(),
        "charts/kiln/crds/ must stay empty: Helm v4 would apply it with server-side apply, \
         which Kubernetes before 1.25 refuses for a CRD with CEL rules"
    );
}

/// What Helm makes of the template, for the directives it uses, without Helm: `cel` picks the
/// branch of each `{{- if $cel }}`, and the chart's own lines (header, labels, annotations)
/// are dropped. `make chart` renders the real template with Helm and compares the same way.
fn render_without_helm(template: &str, cel: bool) -> String {
    let (_, body) = template
        .split_once(".Capabilities.KubeVersion.Version)) }}\n")
        .expect("the header ends with the $cel assignment");
    let body = body
        .strip_suffix("{{- end }}\n")
        .expect("the template ends the crds.install condition");
    let (head, rest) = body.split_once("  labels:\n").expect("metadata labels");
    let (_, rest) = rest
        .split_once("spec:\n")
        .expect("the spec after the metadata");
    let mut out = format!("{head}spec:\n");
    let mut skipping = false;
    for line in rest.lines() {
        match line.trim() {
            "{{- if $cel }}" => skipping = !cel,
            "{{- end }}" => skipping = false,
            _ if !skipping => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_chart_template_renders_the_crd_with_and_without_cel() {
    let template = kiln_crds::chart::crd_template();
    let full = serde_json::to_value(kiln_crds::crd()).unwrap();
    let mut stripped = full.clone();
    kiln_crds::chart::strip_validations(&mut stripped);
    assert_ne!(full, stripped, "the CRD has CEL rules to strip");

    let with: serde_json::Value =
        serde_saphyr::from_str(&render_without_helm(&template, true)).unwrap();
    assert_eq!(with, full, "with CEL, the template is the CRD");
    let without: serde_json::Value =
        serde_saphyr::from_str(&render_without_helm(&template, false)).unwrap();
    assert_eq!(
        without, stripped,
        "without CEL, the template is the CRD less its rules"
    );
    assert!(
        !serde_json::to_string(&without)
            .unwrap()
            .contains("x-kubernetes-validations")
    );

    assert!(template.contains("helm.sh/resource-policy: keep"));
    assert!(template.contains("{{- if .Values.crds.install }}"));
    assert!(template.contains("semverCompare \">=1.25.0-0\" .Capabilities.KubeVersion.Version"));
}

#[test]
fn crd_names_subresources_and_columns() {
    let crd = kiln_crds::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("imagebuilds.kiln.dev"));
    assert_eq!(crd.spec.names.short_names, Some(vec!["ib".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(
        subresources.status.is_some(),
        "status must be a subresource"
    );
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    for expected in [
        ("Phase", ".status.phase"),
        ("Image", ".spec.output.image"),
        ("Digest", ".status.shortDigest"),
        ("Age", ".metadata.creationTimestamp"),
        ("Duration", ".status.duration"),
    ] {
        assert!(
            columns.contains(&expected),
            "missing printer column {expected:?}"
        );
    }
}

#[test]
fn conditions_use_the_metav1_condition_shape() {
    let schema = common::openapi_schema();
    let condition = &schema["properties"]["status"]["properties"]["conditions"]["items"];
    let required: Vec<&str> = condition["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["type", "status", "lastTransitionTime", "reason", "message"] {
        assert!(required.contains(&field), "Condition must require {field}");
    }
}

#[test]
fn every_field_is_documented() {
    fn walk(schema: &serde_json::Value, path: &str, undocumented: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                let documented = sub
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.trim().is_empty());
                if !documented && p != ".apiVersion" && p != ".kind" && p != ".metadata" {
                    undocumented.push(p.clone());
                }
                walk(sub, &p, undocumented);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), undocumented);
        }
    }
    let mut undocumented = Vec::new();
    walk(&common::openapi_schema(), "", &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:?}"
    );
}

#[test]
fn cel_rules_compile() {
    let schema = common::openapi_schema();
    let compiled = kube::core::cel::compile_schema(&schema);
    fn errors(s: &kube::core::cel::CompiledSchema, out: &mut Vec<String>) {
        out.extend(s.compilation_errors().iter().map(|e| e.to_string()));
        for child in s.properties.values() {
            errors(child, out);
        }
        if let Some(items) = &s.items {
            errors(items, out);
        }
        if let Some(additional) = &s.additional_properties {
            errors(additional, out);
        }
    }
    let mut out = Vec::new();
    errors(&compiled, &mut out);
    assert!(out.is_empty(), "CEL rules that do not compile: {out:?}");
    let rules = serde_json::to_string(&schema)
        .unwrap()
        .matches("x-kubernetes-validations")
        .count();
    assert!(
        rules >= 8,
        "expected the CEL rules in the schema, found {rules}"
    );
}
