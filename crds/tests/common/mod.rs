//! Shared helpers of the crds tests: the repository's files and the generated schema, checked
//! the way the API server checks an object.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every YAML document of a file, as JSON values.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The YAML files of a directory, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

/// The CRD's openAPIV3Schema.
pub fn openapi_schema() -> Value {
    let crd = kiln_crds::crd();
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .unwrap()
        .open_api_v3_schema
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

/// Check an object against the CRD schema as the API server would, returning the problems.
///
/// The OpenAPI v3 schema is turned into JSON Schema (`nullable` and
/// `x-kubernetes-int-or-string` become type lists), unknown fields below the root are refused
/// (the API server prunes them; refusing catches typos in our examples), and
/// `x-kubernetes-list-type: map|set` uniqueness is checked, which JSON Schema cannot say.
pub fn schema_errors(object: &Value) -> Vec<String> {
    let schema = openapi_schema();
    let json_schema = to_json_schema(&schema, true);
    let validator = jsonschema::validator_for(&json_schema).expect("the CRD schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect();
    list_uniqueness(&schema, object, String::new(), &mut errors);
    errors
}

fn to_json_schema(schema: &Value, root: bool) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" => {
                let props = value
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json_schema(v, false)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), to_json_schema(value, false));
            }
            "anyOf" | "oneOf" | "allOf" => {
                let branches = value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| to_json_schema(v, false))
                    .collect();
                out.insert(key.clone(), Value::Array(branches));
            }
            k if k.starts_with("x-kubernetes-") || k == "nullable" => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    let nullable = map.get("nullable") == Some(&Value::Bool(true));
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let mut types: Vec<Value> = match map.get("type") {
        Some(t) => vec![t.clone()],
        None if int_or_string => vec!["integer".into(), "string".into()],
        None => vec![],
    };
    if !types.is_empty() {
        if nullable {
            types.push("null".into());
        }
        out.insert("type".into(), Value::Array(types));
    }
    if !root && map.contains_key("properties") && !map.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

fn list_uniqueness(schema: &Value, value: &Value, path: String, errors: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let sub = schema
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    list_uniqueness(sub, v, format!("{path}.{k}"), errors);
                }
            }
        }
        Value::Array(items) => {
            let key_of = |item: &Value| -> Value {
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => {
                        let keys = schema["x-kubernetes-list-map-keys"].as_array().unwrap();
                        Value::Array(
                            keys.iter()
                                .map(|k| item[k.as_str().unwrap()].clone())
                                .collect(),
                        )
                    }
                    _ => item.clone(),
                }
            };
            if matches!(
                schema.get("x-kubernetes-list-type").and_then(Value::as_str),
                Some("map" | "set")
            ) {
                let mut seen = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let key = key_of(item);
                    if seen.contains(&key) {
                        errors.push(format!("{path}[{i}]: Duplicate value: {key}"));
                    }
                    seen.push(key);
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    list_uniqueness(item_schema, item, format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}
