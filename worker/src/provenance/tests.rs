use super::*;

fn inputs() -> Inputs {
    Inputs {
        args: BTreeMap::from([
            ("build-arg:VERSION".to_string(), "1.2".to_string()),
            ("label:team".to_string(), "a".to_string()),
            ("target".to_string(), "app".to_string()),
        ]),
        dockerfile: "Dockerfile".into(),
        dockerfile_text: "FROM busybox\n".into(),
        locals: vec!["context".into(), "dockerfile".into()],
        git: None,
        secrets: vec![Used {
            id: "npm".into(),
            optional: true,
        }],
        ssh: vec![],
        materials: vec![Material::new(
            "pkg:docker/busybox@latest?platform=linux%2Famd64".into(),
            &crate::digest::Digest::of(b"index"),
        )],
        network: false,
        builder_platform: "linux/amd64".into(),
        invocation_id: "x".into(),
        started_on: "2024-01-01T00:00:00Z".into(),
        finished_on: "2024-01-01T00:00:01Z".into(),
    }
}

#[test]
fn options_parse_as_buildx_and_buildkit_read_them() {
    assert_eq!(
        Options::parse_flag("true").unwrap(),
        Some(Options::default())
    );
    assert_eq!(Options::parse_flag("1").unwrap().unwrap().mode, Mode::Max);
    assert_eq!(Options::parse_flag("false").unwrap(), None);
    let o = Options::parse_flag("mode=min,version=v0.2,builder-id=https://ci/1")
        .unwrap()
        .unwrap();
    assert_eq!((o.mode, o.version), (Mode::Min, Version::V02));
    assert_eq!(o.builder_id, "https://ci/1");
    assert_eq!(o.predicate_type(), PREDICATE_V02);
    assert_eq!(Options::parse("mode=max,disabled=true").unwrap(), None);
    assert!(Options::parse("mode=medium").is_err());
    assert!(Options::parse("colour=blue").is_err());
}

#[test]
fn flags_combine_as_buildx_reads_them() {
    let attest = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(Options::from_flags(None, &[], None).unwrap(), None);
    let o = Options::from_flags(None, &attest(&["type=provenance,mode=min"]), None).unwrap();
    assert_eq!(o.unwrap().mode, Mode::Min);
    // --provenance wins.
    let o = Options::from_flags(Some("false"), &attest(&["type=provenance"]), None);
    assert_eq!(o.unwrap(), None);
    let o = Options::from_flags(Some("mode=max"), &[], Some("false")).unwrap();
    assert_eq!(o.unwrap().mode, Mode::Max);
    let e = Options::from_flags(None, &[], Some("true")).unwrap_err();
    assert!(e.contains("SBOM attestations are not supported yet"), "{e}");
    let e = Options::from_flags(None, &attest(&["type=sbom"]), None).unwrap_err();
    assert!(e.contains("not supported yet"), "{e}");
    assert!(Options::from_flags(None, &attest(&["type=sbom,disabled=true"]), None).is_ok());
    assert!(Options::from_flags(None, &attest(&["type=spdx"]), None).is_err());
    assert!(Options::from_flags(None, &attest(&["mode=max"]), None).is_err());
}

#[test]
fn min_drops_build_args_labels_secrets_and_the_dockerfile() {
    let min = Options {
        mode: Mode::Min,
        ..Options::default()
    };
    let p = predicate(&min, &inputs());
    let req = &p["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(req["args"], serde_json::json!({"target": "app"}));
    assert!(req.get("secrets").is_none());
    assert_eq!(
        p["runDetails"]["metadata"]["buildkit_completeness"],
        serde_json::json!({"request": false, "resolvedDependencies": false})
    );
    assert!(
        p["runDetails"]["metadata"]["buildkit_metadata"]
            .get("source")
            .is_none()
    );
    assert_eq!(
        p["buildDefinition"]["buildType"],
        "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
    );
    assert_eq!(
        p["buildDefinition"]["externalParameters"]["configSource"],
        serde_json::json!({"path": "Dockerfile"})
    );
}

#[test]
fn max_has_the_request_ids_and_the_dockerfile() {
    let p = predicate(&Options::default(), &inputs());
    let req = &p["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(req["frontend"], "dockerfile.v0");
    assert_eq!(req["args"]["build-arg:VERSION"], "1.2");
    assert_eq!(req["args"]["label:team"], "a");
    assert_eq!(
        req["secrets"],
        serde_json::json!([{"id": "npm", "optional": true}])
    );
    assert_eq!(
        req["locals"],
        serde_json::json!([{"name": "context"}, {"name": "dockerfile"}])
    );
    let info = &p["runDetails"]["metadata"]["buildkit_metadata"]["source"]["infos"][0];
    assert_eq!(info["filename"], "Dockerfile");
    assert_eq!(info["data"], "RlJPTSBidXN5Ym94Cg==");
    assert_eq!(
        p["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        p["runDetails"]["metadata"]["buildkit_completeness"]["request"],
        true
    );
}

#[test]
fn v02_has_materials_invocation_and_metadata() {
    let mut i = inputs();
    i.git = Some((
        "https://example.com/r.git#main".into(),
        "0123456789abcdef0123456789abcdef01234567".into(),
    ));
    i.locals.clear();
    let o = Options {
        version: Version::V02,
        ..Options::default()
    };
    let p = predicate(&o, &i);
    assert_eq!(p["buildType"], BUILD_TYPE_V02);
    assert_eq!(p["invocation"]["configSource"]["entryPoint"], "Dockerfile");
    assert_eq!(
        p["invocation"]["configSource"]["digest"]["sha1"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(p["invocation"]["environment"]["platform"], "linux/amd64");
    assert_eq!(p["metadata"]["completeness"]["materials"], true);
    assert_eq!(
        p["metadata"]["https://mobyproject.org/buildkit@v1#hermetic"],
        true
    );
    assert_eq!(p["metadata"]["buildStartedOn"], "2024-01-01T00:00:00Z");
}

#[test]
fn statements_keep_buildkits_field_order() {
    let subjects = subjects(
        &[],
        &crate::image::oci::Platform::host(),
        &crate::digest::Digest::of(b"m"),
    );
    let bytes = statement(&Options::default(), subjects, &inputs());
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"_","digest":{"sha256":"#),
        "{text}"
    );
    assert!(
        text.contains(r#""predicate":{"buildDefinition":{"buildType":"#),
        "{text}"
    );
    assert!(
        text.contains(r#""runDetails":{"builder":{"id":"","version":{"kiln":"#),
        "{text}"
    );
}

#[test]
fn invocation_ids_are_25_base36_digits() {
    let a = invocation_id();
    assert_eq!(a.len(), 25);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert_ne!(a, invocation_id());
}
