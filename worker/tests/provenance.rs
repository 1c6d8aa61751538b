//! SLSA provenance attached the way BuildKit attaches it: an attestation manifest per platform
//! image in the image index (`unknown/unknown`, `vnd.docker.reference.*` annotations), holding
//! an in-toto statement whose subject is the image manifest; read back from a real registry
//! on loopback and checked field by field, with the secrets of the build nowhere in it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use common::{Env, text};
use kiln_tests::registry::Registry;
use serde_json::Value;

const FILE_SECRET: &str = "S3CR3T-file-7d1c2b9e";
const ENV_SECRET: &str = "S3CR3T-env-48aa03f1";

fn build(env: &Env, ctx: &Path, args: &[String], envs: &[(&str, &str)]) -> Output {
    let mut all = vec![
        "build".to_string(),
        "--progress=plain".into(),
        format!("--cache-dir={}", env.dir.join("state").display()),
    ];
    all.extend(args.iter().cloned());
    all.push(ctx.display().to_string());
    env.kiln_env(&all, envs)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// GET a path of the (plain HTTP) registry: the body.
fn get(reg: &Registry, path: &str, accept: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(reg.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
        reg.addr
    )
    .unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..at]).to_string();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    out[at + 4..].to_vec()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The index of `repo:tag`, and the in-toto statement of each attestation manifest, by the
/// digest of the image it refers to.
fn attestations(reg: &Registry, repo: &str, tag: &str) -> (Value, Vec<(String, Value, Value)>) {
    let index = json(&get(reg, &format!("/v2/{repo}/manifests/{tag}"), OCI_INDEX));
    let mut out = vec![];
    for e in index["manifests"].as_array().unwrap() {
        if e["annotations"]["vnd.docker.reference.type"] != "attestation-manifest" {
            continue;
        }
        assert_eq!(
            e["platform"],
            serde_json::json!({"architecture": "unknown", "os": "unknown"})
        );
        let m = json(&get(
            reg,
            &format!("/v2/{repo}/manifests/{}", e["digest"].as_str().unwrap()),
            OCI_MANIFEST,
        ));
        let layer = &m["layers"][0];
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json", "{m}");
        let config = json(&get(
            reg,
            &format!(
                "/v2/{repo}/blobs/{}",
                m["config"]["digest"].as_str().unwrap()
            ),
            "*/*",
        ));
        assert_eq!(
            (config["os"].as_str(), config["architecture"].as_str()),
            (Some("unknown"), Some("unknown"))
        );
        assert_eq!(config["rootfs"]["diff_ids"][0], layer["digest"]);
        let statement = json(&get(
            reg,
            &format!("/v2/{repo}/blobs/{}", layer["digest"].as_str().unwrap()),
            "*/*",
        ));
        assert_eq!(
            statement["predicateType"],
            layer["annotations"]["in-toto.io/predicate-type"]
        );
        out.push((
            e["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .unwrap()
                .to_string(),
            m,
            statement,
        ));
    }
    (index, out)
}

/// Every file under `dir`, searched for `needle`.
fn holds(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = vec![];
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file()
            && std::fs::read(e.path())
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(e.path().display().to_string());
        }
    }
    found
}

#[test]
fn provenance_is_attached_as_buildkit_attaches_it() {
    let env = Env::new("provenance", false);
    let reg = Registry::plain();
    let host = reg.host();
    // A base in the registry (so that a resolved dependency names it).
    let meta = env.dir.join("base.json");
    let out = build(
        &env,
        &env.dir.join("base"),
        &[
            "-t".into(),
            format!("{host}/kiln/busybox:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let base_digest = json(&std::fs::read(&meta).unwrap())["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();

    // A download, with a digest to check: the base's config blob, served by the registry.
    let base_manifest = json(&get(&reg, "/v2/kiln/busybox/manifests/1", OCI_MANIFEST));
    let config_digest = base_manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("http://{host}/v2/kiln/busybox/blobs/{config_digest}");
    let secret_file = env.dir.join("tok");
    std::fs::write(&secret_file, FILE_SECRET).unwrap();
    let ctx = env.context(
        "app",
        &[(
            "Dockerfile",
            &format!(
                "FROM {host}/kiln/busybox:1\nARG VERSION\nADD {url} /base-config.json\nRUN --mount=type=secret,id=tok cat /run/secrets/tok >/dev/null && echo v$VERSION > /version\nRUN --mount=type=secret,id=envtok,env=TOKEN,required=true test -n \"$TOKEN\"\nRUN --network=none true\n"
            ),
        )],
    );
    let meta = env.dir.join("app.json");
    let layout = env.dir.join("layout");
    let local = env.dir.join("local");
    let common_args = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "--build-arg=VERSION=1.2".into(),
            "--label=team=kiln".into(),
            format!("--secret=id=tok,src={}", secret_file.display()),
            "--secret=id=envtok,env=MY_TOKEN".into(),
            "-t".into(),
            format!("{host}/kiln/prov:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let envs = [("MY_TOKEN", ENV_SECRET)];
    let before = std::time::SystemTime::now();
    let out = build(
        &env,
        &ctx,
        &common_args(&[
            "--provenance=mode=max,builder-id=https://ci.example/run/7",
            &format!("--output=type=oci,dest={}", layout.display()),
            &format!("--output=type=local,dest={}", local.display()),
        ]),
        &envs,
    );
    assert!(out.status.success(), "{}", text(&out));
    let m = json(&std::fs::read(&meta).unwrap());
    let digest = m["containerimage.digest"].as_str().unwrap();

    // The index: the image for linux/amd64, then its attestation manifest.
    let (index, atts) = attestations(&reg, "kiln/prov", "1");
    assert_eq!(
        index["manifests"][0]["digest"].as_str().map(|d| d.len()),
        Some(71)
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let image_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(atts.len(), 1);
    let (refers, _, st) = &atts[0];
    assert_eq!(refers, &image_digest);
    assert!(digest.starts_with("sha256:") && digest != image_digest);

    // The statement.
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let port = reg.addr.port();
    assert_eq!(
        st["subject"],
        serde_json::json!([{
            "name": format!("pkg:docker/127.0.0.1%3A{port}/kiln/prov@1?platform=linux%2Famd64"),
            "digest": {"sha256": image_digest.trim_start_matches("sha256:")},
        }])
    );
    let p = &st["predicate"];
    let def = &p["buildDefinition"];
    assert_eq!(
        def["buildType"],
        "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
    );
    assert_eq!(
        def["externalParameters"]["configSource"],
        serde_json::json!({"path": "Dockerfile"})
    );
    let req = &def["externalParameters"]["request"];
    assert_eq!(req["frontend"], "dockerfile.v0");
    assert_eq!(
        req["args"],
        serde_json::json!({"build-arg:VERSION": "1.2", "label:team": "kiln"})
    );
    assert_eq!(
        req["secrets"],
        serde_json::json!([{"id": "envtok"}, {"id": "tok", "optional": true}])
    );
    assert_eq!(
        req["locals"],
        serde_json::json!([{"name": "context"}, {"name": "dockerfile"}])
    );
    assert_eq!(def["internalParameters"]["builderPlatform"], "linux/amd64");
    assert_eq!(
        def["resolvedDependencies"],
        serde_json::json!([
            {
                "uri": format!("pkg:docker/127.0.0.1%3A{port}/kiln/busybox@1?platform=linux%2Famd64"),
                "digest": {"sha256": base_digest.trim_start_matches("sha256:")},
            },
            {"uri": url, "digest": {"sha256": config_digest.trim_start_matches("sha256:")}},
        ])
    );
    let run = &p["runDetails"];
    assert_eq!(run["builder"]["id"], "https://ci.example/run/7");
    let md = &run["metadata"];
    assert_eq!(md["invocationId"].as_str().unwrap().len(), 25);
    // A local context: the dependencies are incomplete, so the build is not hermetic.
    assert_eq!(
        md["buildkit_completeness"],
        serde_json::json!({"request": true, "resolvedDependencies": false})
    );
    assert!(md.get("buildkit_hermetic").is_none());
    let dockerfile = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    let data = md["buildkit_metadata"]["source"]["infos"][0]["data"]
        .as_str()
        .unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        dockerfile.as_bytes()
    );
    // RFC 3339 in UTC, as Go writes it: comparable as (seconds part, nanoseconds).
    let time = |k: &str| {
        let t = md[k].as_str().unwrap().to_string();
        assert!(t.ends_with('Z') && t.len() >= 20, "{t}");
        let frac = t[19..t.len() - 1].trim_start_matches('.');
        (t[..19].to_string(), format!("{frac:0<9}"))
    };
    let (started, finished) = (time("startedOn"), time("finishedOn"));
    assert!(started <= finished, "{started:?} {finished:?}");
    let since = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        started.0.as_str() >= &kiln_worker::image::oci::rfc3339(since as i64, 0)[..19],
        "{started:?}"
    );

    // The OCI layout holds the same index; the local output has the statement as
    // provenance.json.
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(top["manifests"][0]["digest"], digest);
    let local_st = json(&std::fs::read(local.join("provenance.json")).unwrap());
    if std::env::var_os("KILN_SHOW_PROVENANCE").is_some() {
        eprintln!("{}", serde_json::to_string_pretty(&local_st).unwrap());
    }
    assert_eq!(
        local_st["predicate"]["buildDefinition"]["externalParameters"],
        p["buildDefinition"]["externalParameters"]
    );

    // No secret value anywhere: not in the registry's storage (every layer, config, statement),
    // the layout, the local output, the state, the metadata or the log. (The search finds what
    // is there: the build argument's value, in the image and the statement.)
    assert!(!holds(&local, "v1.2").is_empty());
    assert!(!holds(reg.dir(), "\"build-arg:VERSION\":\"1.2\"").is_empty());
    for secret in [FILE_SECRET, ENV_SECRET] {
        for dir in [
            reg.dir(),
            layout.as_path(),
            local.as_path(),
            env.dir.join("state").as_path(),
        ] {
            let found = holds(dir, secret);
            assert!(found.is_empty(), "{secret} found in {found:?}");
        }
        assert!(!text(&out).contains(secret));
        assert!(!std::fs::read_to_string(&meta).unwrap().contains(secret));
    }

    // mode=min: no build arguments, labels, secret ids or Dockerfile; the request is then
    // incomplete.
    let out = build(
        &env,
        &ctx,
        &common_args(&["--attest=type=provenance,mode=min"]),
        &envs,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, atts) = attestations(&reg, "kiln/prov", "1");
    let p = &atts[0].2["predicate"];
    let req = &p["buildDefinition"]["externalParameters"]["request"];
    assert!(
        req.get("args").is_none() && req.get("secrets").is_none(),
        "{req}"
    );
    assert_eq!(
        p["runDetails"]["metadata"]["buildkit_completeness"]["request"],
        false
    );
    assert!(
        p["runDetails"]["metadata"]["buildkit_metadata"]
            .get("source")
            .is_none()
    );
    assert_eq!(
        p["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"],
        base_digest.trim_start_matches("sha256:")
    );

    // SLSA v0.2, as BuildKit v0.11 to v0.27 wrote by default, asked with the build argument.
    let out = build(
        &env,
        &ctx,
        &common_args(&["--build-arg=BUILDKIT_ATTEST_PROVENANCE=mode=max,version=v0.2"]),
        &envs,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, atts) = attestations(&reg, "kiln/prov", "1");
    let st = &atts[0].2;
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v0.2");
    let p = &st["predicate"];
    assert_eq!(p["buildType"], "https://mobyproject.org/buildkit@v1");
    assert_eq!(p["invocation"]["configSource"]["entryPoint"], "Dockerfile");
    assert_eq!(
        p["invocation"]["parameters"]["args"]["build-arg:VERSION"],
        "1.2"
    );
    assert_eq!(
        p["materials"][0]["uri"],
        format!("pkg:docker/127.0.0.1%3A{port}/kiln/busybox@1?platform=linux%2Famd64")
    );
    assert!(p["metadata"]["buildStartedOn"].is_string());

    // Without provenance, a single platform is a single manifest again.
    let out = build(&env, &ctx, &common_args(&[]), &envs);
    assert!(out.status.success(), "{}", text(&out));
    let raw = get(
        &reg,
        "/v2/kiln/prov/manifests/1",
        &format!("{OCI_MANIFEST},{OCI_INDEX}"),
    );
    assert_eq!(json(&raw)["mediaType"], OCI_MANIFEST);

    // SBOMs are refused, saying so.
    let out = build(&env, &ctx, &["--sbom=true".into()], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("SBOM attestations are not supported yet"),
        "{}",
        text(&out)
    );
}

/// Two platforms, each with its own attestation, each naming its own image (no RUN step, so
/// no emulation is needed).
#[test]
fn each_platform_gets_its_own_attestation() {
    let env = Env::new("provenance-multi", false);
    let reg = Registry::plain();
    let host = reg.host();
    let ctx = env.context(
        "multi",
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY f-$TARGETARCH /f\n",
            ),
            ("f-amd64", "a"),
            ("f-arm64", "b"),
        ],
    );
    let out = build(
        &env,
        &ctx,
        &[
            "--platform=linux/amd64,linux/arm64".into(),
            "--provenance=true".into(),
            "-t".into(),
            format!("{host}/kiln/multi:1"),
            "--push".into(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (index, atts) = attestations(&reg, "kiln/multi", "1");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let images: Vec<(String, String)> = entries[..2]
        .iter()
        .map(|e| {
            (
                e["digest"].as_str().unwrap().to_string(),
                e["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(atts.len(), 2);
    for ((image, arch), (refers, _, st)) in images.iter().zip(&atts) {
        assert_eq!(refers, image);
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            image.trim_start_matches("sha256:")
        );
        assert!(
            st["subject"][0]["name"]
                .as_str()
                .unwrap()
                .ends_with(&format!("platform=linux%2F{arch}"))
        );
        // BuildKit's default mode is max: the build arguments are there.
        assert_eq!(
            st["predicate"]["runDetails"]["metadata"]["buildkit_completeness"]["request"],
            true
        );
    }
    // Both platforms share one invocation.
    assert_eq!(
        atts[0].2["predicate"]["runDetails"]["metadata"]["invocationId"],
        atts[1].2["predicate"]["runDetails"]["metadata"]["invocationId"]
    );
}
