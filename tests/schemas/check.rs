//! Checks records of `monitor --format ocsf` and `--format ecs` against the real schemas vendored
//! next to this file (README.md says where they come from and how to regenerate them): OCSF
//! records against the JSON Schema of their class (`ocsf/<class>.json`, by `class_uid`), ECS
//! records against ECS's field definitions (`ecs/ecs_flat.json`): every field is an ECS field and
//! its value fits the field's type, arrays only where ECS expects them, allowed and expected
//! values, the event types each event category allows, and the required fields.
//!
//! Included with `#[path]` by monitor's format tests (monitor/tests/formats.rs) and by the
//! privileged end-to-end test (tests/tests/formats.rs), so both check the same way.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value};

/// The vendored schemas: `<workspace>/tests/schemas`, from a crate directory beside it.
pub fn dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../tests/schemas")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The OCSF classes' JSON Schemas, by class uid.
pub struct Ocsf {
    classes: BTreeMap<u64, (String, jsonschema::Validator)>,
}

/// The OCSF release the schemas are of.
pub const OCSF_VERSION: &str = "1.8.0";

impl Ocsf {
    pub fn load(schemas: &Path) -> Self {
        let dir = schemas.join("ocsf");
        let mut classes = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let schema = read_json(&path);
            let uid = schema["properties"]["class_uid"]["const"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}: no class_uid const", path.display()));
            assert!(
                schema["$id"]
                    .as_str()
                    .is_some_and(|id| id.contains(&format!("/schema/{OCSF_VERSION}/"))),
                "{}: not an OCSF {OCSF_VERSION} schema",
                path.display()
            );
            let validator = jsonschema::options()
                .build(&schema)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            classes.insert(uid, (name, validator));
        }
        assert!(!classes.is_empty(), "no OCSF schemas in {}", dir.display());
        Self { classes }
    }

    /// The class uids there are schemas for.
    pub fn class_uids(&self) -> Vec<u64> {
        self.classes.keys().copied().collect()
    }

    /// Why `record` is not a valid OCSF 1.8.0 event of its class (empty when it is).
    pub fn errors(&self, record: &Value) -> Vec<String> {
        let Some(uid) = record["class_uid"].as_u64() else {
            return vec!["no integer class_uid".to_owned()];
        };
        let Some((name, validator)) = self.classes.get(&uid) else {
            return vec![format!("class_uid {uid} has no schema here")];
        };
        let mut errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| format!("{name}: {e} at {}", e.instance_path()))
            .collect();
        // What the schema cannot say: the type uid is class * 100 + activity.
        let activity = record["activity_id"].as_u64().unwrap_or_default();
        if record["type_uid"].as_u64() != Some(uid * 100 + activity) {
            errors.push(format!(
                "type_uid {} is not class_uid * 100 + activity_id ({})",
                record["type_uid"],
                uid * 100 + activity
            ));
        }
        if record["metadata"]["version"] != OCSF_VERSION {
            errors.push(format!(
                "metadata.version {} is not {OCSF_VERSION}",
                record["metadata"]["version"]
            ));
        }
        errors
    }
}

/// One ECS field definition.
struct Field {
    kind: String,
    required: bool,
    array: bool,
    object_type: Option<String>,
    /// Allowed values, each with the event types it expects (event.category).
    allowed: Option<Vec<(String, Vec<String>)>>,
    expected: Option<Vec<String>>,
    pattern: Option<String>,
}

/// ECS's field definitions (`ecs_flat`).
pub struct Ecs {
    pub version: String,
    fields: BTreeMap<String, Field>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Ecs {
    pub fn load(schemas: &Path) -> Self {
        let path = schemas.join("ecs/ecs_flat.json");
        let flat = read_json(&path);
        let version = flat["ecs_version"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no ecs_version", path.display()))
            .to_owned();
        let defs = flat["fields"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no fields", path.display()));
        let fields = defs
            .iter()
            .map(|(name, d)| {
                let field = Field {
                    kind: d["type"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{}: {name} has no type", path.display()))
                        .to_owned(),
                    required: d["required"] == true,
                    array: strings(&d["normalize"]).iter().any(|n| n == "array"),
                    object_type: d["object_type"].as_str().map(str::to_owned),
                    allowed: d["allowed_values"].as_array().map(|values| {
                        values
                            .iter()
                            .map(|v| {
                                (
                                    v["name"].as_str().unwrap_or_default().to_owned(),
                                    strings(&v["expected_event_types"]),
                                )
                            })
                            .collect()
                    }),
                    expected: d.get("expected_values").map(strings),
                    pattern: d["pattern"].as_str().map(str::to_owned),
                };
                (name.clone(), field)
            })
            .collect();
        Self { version, fields }
    }

    /// Why `record` is not an ECS document (empty when it is).
    pub fn errors(&self, record: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(root) = record.as_object() else {
            return vec!["not a JSON object".to_owned()];
        };
        self.walk("", root, &mut errors);
        for (name, field) in &self.fields {
            if field.required && lookup(record, name).is_none() {
                errors.push(format!("{name}: required by ECS, missing"));
            }
        }
        // Each event.type must be one that some event.category of the record expects.
        if let (Some(categories), Some(types)) = (
            record["event"]["category"].as_array(),
            record["event"]["type"].as_array(),
        ) {
            let allowed = &self.fields["event.category"].allowed;
            let expected: Vec<&String> = categories
                .iter()
                .filter_map(|c| {
                    allowed
                        .iter()
                        .flatten()
                        .find(|(name, _)| c == name.as_str())
                })
                .flat_map(|(_, types)| types)
                .collect();
            for t in types {
                if !expected.iter().any(|e| t == e.as_str()) {
                    errors.push(format!(
                        "event.type {t} is not one event.category {categories:?} expects"
                    ));
                }
            }
        }
        errors
    }

    fn has_subfields(&self, name: &str) -> bool {
        let prefix = format!("{name}.");
        self.fields
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    fn walk(&self, prefix: &str, object: &Map<String, Value>, errors: &mut Vec<String>) {
        for (key, value) in object {
            let name = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match self.fields.get(&name) {
                Some(field) if field.kind == "nested" => match value.as_array() {
                    Some(items) => {
                        for item in items {
                            match item.as_object() {
                                Some(o) => self.walk(&name, o, errors),
                                None => {
                                    errors.push(format!("{name}: nested, {item} not an object"));
                                }
                            }
                        }
                    }
                    None => errors.push(format!("{name}: nested, {value} not an array")),
                },
                Some(field) if field.kind == "object" || field.kind == "flattened" => {
                    match (value.as_object(), &field.object_type) {
                        (None, _) => errors.push(format!("{name}: {value} is not an object")),
                        (Some(o), Some(kind)) => {
                            // `labels`: any keys, each value of `object_type`.
                            for (k, v) in o {
                                if k.contains('.') {
                                    errors.push(format!("{name}.{k}: a dot in the key nests it"));
                                }
                                let leaf = Field {
                                    kind: kind.clone(),
                                    required: false,
                                    array: false,
                                    object_type: None,
                                    allowed: None,
                                    expected: None,
                                    pattern: None,
                                };
                                check_leaf(&format!("{name}.{k}"), &leaf, v, errors);
                            }
                        }
                        (Some(o), None) if self.has_subfields(&name) => self.walk(&name, o, errors),
                        (Some(_), None) => {}
                    }
                }
                Some(field) => check_leaf(&name, field, value, errors),
                None => match value.as_object() {
                    Some(o) if self.has_subfields(&name) => self.walk(&name, o, errors),
                    _ => errors.push(format!("{name}: not an ECS {} field", self.version)),
                },
            }
        }
    }
}

/// The value at a dotted path, through nested objects.
fn lookup<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = record.get(name) {
        return Some(v);
    }
    let (head, rest) = name.split_once('.')?;
    lookup(record.get(head)?, rest)
}

fn check_leaf(name: &str, field: &Field, value: &Value, errors: &mut Vec<String>) {
    let values: Vec<&Value> = match value {
        Value::Array(items) => {
            if !field.array {
                errors.push(format!("{name}: ECS does not expect an array"));
            }
            items.iter().collect()
        }
        other => vec![other],
    };
    for v in values {
        if let Some(why) = type_error(&field.kind, v) {
            errors.push(format!("{name}: {v} {why}"));
            continue;
        }
        if let Some(allowed) = &field.allowed
            && !allowed.iter().any(|(a, _)| v == a.as_str())
        {
            errors.push(format!("{name}: {v} is not an allowed value"));
        }
        if let Some(expected) = &field.expected
            && !expected.iter().any(|e| v == e.as_str())
        {
            errors.push(format!("{name}: {v} is not an expected value {expected:?}"));
        }
        if let Some(pattern) = &field.pattern {
            let schema = serde_json::json!({ "type": "string", "pattern": pattern });
            match jsonschema::validator_for(&schema) {
                Ok(check) if check.is_valid(v) => {}
                Ok(_) => errors.push(format!("{name}: {v} does not match {pattern}")),
                Err(e) => errors.push(format!("{name}: pattern {pattern}: {e}")),
            }
        }
    }
}

/// Why a JSON value cannot be stored in a field of ECS type `kind`.
fn type_error(kind: &str, v: &Value) -> Option<&'static str> {
    let fits = match kind {
        "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => v.is_string(),
        "long" => v.is_i64() || v.as_u64().is_some_and(|n| i64::try_from(n).is_ok()),
        "integer" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        "unsigned_long" => v.is_u64(),
        "float" | "double" | "scaled_float" | "half_float" => v.is_number(),
        "boolean" => v.is_boolean(),
        "ip" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        "date" => {
            v.is_i64()
                || v.as_str()
                    .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok())
        }
        "geo_point" => v.is_object() || v.is_string(),
        _ => return Some("is of a type this check does not know"),
    };
    (!fits).then_some(match kind {
        "ip" => "is not an IP address",
        "date" => "is not an RFC 3339 date",
        _ => "does not fit the field's type",
    })
}
