//! The Argo CD health check shipped in `examples/gitops/argocd/argocd-cm-health.yaml` (and
//! shown in `docs/gitops.md`) gives, for every status the operator writes, the health that
//! `status::health()` gives: kstatus' reading, which Flux uses. The Lua runs in a real Lua 5.1
//! interpreter, the language of Argo CD's gopher-lua (`make test` installs Debian's `lua5.1`).

mod common;

use std::process::Command;

use common::repo_root;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{ImageBuildStatus, Phase};
use kiln_operator::status::{self, Health};
use serde_json::{Value, json};

const KEY: &str = "resource.customizations.health.kiln.dev_ImageBuild";

/// The health check as shipped, and as the docs show it (they must be the same).
fn health_lua() -> String {
    let path = repo_root().join("examples/gitops/argocd/argocd-cm-health.yaml");
    let cm: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let lua = cm["data"][KEY]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {KEY}", path.display()))
        .to_string();
    let docs = std::fs::read_to_string(repo_root().join("docs/gitops.md")).unwrap();
    let shown = docs
        .split("```lua\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/gitops.md shows the health check in a ```lua block");
    assert_eq!(
        shown, lua,
        "docs/gitops.md and examples/gitops/argocd/argocd-cm-health.yaml differ"
    );
    lua
}

/// A Lua 5.1 interpreter (Argo CD's dialect), or another Lua, or none.
fn lua() -> Option<&'static str> {
    ["lua5.1", "luajit", "lua5.4", "lua5.3", "lua"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// A JSON value as a Lua table constructor (`null` fields are left out, as Argo CD does).
fn to_lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(to_lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", to_lua(&Value::String(k.clone())), to_lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health check on an ImageBuild; returns Argo CD's (status, message).
fn argo_health(lua_bin: &str, script: &str, obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function check()\n{script}\nend\nlocal hs = check()\nprint(hs.status)\nprint(hs.message)\n",
        to_lua(obj)
    );
    let out = Command::new(lua_bin)
        .arg("-e")
        .arg(&program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{lua_bin} failed: {}\n{program}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_string(),
        lines.next().unwrap_or_default().to_string(),
    )
}

fn argo_name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "Healthy",
        Health::Degraded => "Degraded",
        Health::Progressing => "Progressing",
    }
}

fn object(generation: i64, status: Option<&ImageBuildStatus>) -> Value {
    let mut obj = json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {"name": "app", "namespace": "team", "generation": generation},
        "spec": {"source": {"inline": {"files": {"Dockerfile": "FROM scratch\n"}}},
                 "output": {"image": "registry.example.com/team/app:1"}},
    });
    if let Some(s) = status {
        obj["status"] = serde_json::to_value(s).unwrap();
    }
    obj
}

#[test]
fn the_argo_cd_health_check_agrees_with_kstatus_on_every_status() {
    let script = health_lua();
    let Some(lua_bin) = lua() else {
        eprintln!(
            "SKIPPED: no Lua interpreter (lua5.1); `make test` installs Debian's lua5.1, or \
             `apt-get install lua5.1`"
        );
        return;
    };
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let cases = [
        (Phase::Pending, "Queued", "waiting for a slot"),
        (
            Phase::Pending,
            "MissingSecret",
            "secret token does not exist",
        ),
        (Phase::Planning, "Planning", "plan pod app-g4-plan"),
        (Phase::Building, "Building", "pod app-g4-1"),
        (Phase::Building, "Retrying", "attempt 1 failed; retrying"),
        (Phase::Succeeded, "Succeeded", "pushed"),
        (Phase::Failed, "StepFailed", "Dockerfile:3: RUN exited 1"),
        (Phase::Failed, "InvalidSpec", "spec.output.image: a digest"),
        (Phase::Cancelled, "Cancelled", "kiln.dev/cancel"),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (phase, reason, message) in cases {
        let mut s = ImageBuildStatus {
            phase: Some(phase),
            observed_generation: Some(4),
            ..Default::default()
        };
        if phase == Phase::Succeeded {
            s.image = Some("registry.example.com/team/app@sha256:abc".into());
        }
        status::apply_phase(&mut s.conditions, phase, reason, message, 4, now);

        // The status describes the current generation.
        let want = status::health(4, Some(4), &s.conditions);
        let (got, msg) = argo_health(lua_bin, &script, &object(4, Some(&s)));
        assert_eq!(got, argo_name(want), "{phase:?}/{reason}: {msg}");
        seen.insert(got.clone());
        match want {
            Health::Degraded => assert_eq!(msg, format!("{reason}: {message}")),
            Health::Healthy => assert_eq!(msg, "registry.example.com/team/app@sha256:abc"),
            Health::Progressing => assert!(msg.starts_with(reason), "{msg}"),
        }

        // A new generation the operator has not seen yet: in progress, whatever the old status.
        let want = status::health(5, Some(4), &s.conditions);
        assert_eq!(want, Health::Progressing);
        let (got, msg) = argo_health(lua_bin, &script, &object(5, Some(&s)));
        assert_eq!(
            got, "Progressing",
            "{phase:?} at an older generation: {msg}"
        );
        assert!(msg.contains("generation 5"), "{msg}");
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["Degraded", "Healthy", "Progressing"]
    );

    // No status yet, and a status without conditions.
    let (got, _) = argo_health(lua_bin, &script, &object(1, None));
    assert_eq!(got, argo_name(status::health(1, None, &[])));
    let bare = ImageBuildStatus {
        observed_generation: Some(1),
        ..Default::default()
    };
    let (got, _) = argo_health(lua_bin, &script, &object(1, Some(&bare)));
    assert_eq!(got, argo_name(status::health(1, Some(1), &[])));
}
