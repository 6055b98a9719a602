//! Completes the generated document with the rules the extractors apply to every
//! operation, so the document is the exact contract (checked by `scripts/contract.sh`,
//! schemathesis over every operation, in `make test`):
//!
//! - an operation with a JSON body may answer 400 (malformed JSON), 413 (over 1 MiB), 415
//!   (not JSON) and 422 (a field fails its check); one with query parameters 422; one with
//!   a path parameter 404 (unknown or malformed id); one with a bearer token 401 and 403;
//! - every string field of a request body refuses control characters other than tab and
//!   line breaks (`extract::refuse_unsafe_values`): [`TEXT`], or [`PRESENT`] for a field marked
//!   `min_length = 1` (required text, which must not be blank once trimmed);
//! - query strings refuse NUL ([`QUERY`]);
//! - a required field is never `null` (it is refused as missing).

use serde_json::{Map, Value, json};

/// No control characters but tab, LF and CR (Rust's `char::is_control`: C0 and C1).
pub const TEXT: &str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
/// [`TEXT`] with at least one character that is not white space.
pub const PRESENT: &str =
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
/// A query value: anything but NUL.
pub const QUERY: &str = r"^[^\x00]*$";

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    })
}

fn add_response(op: &mut Value, status: &str, description: &str) {
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses.entry(status).or_insert_with(|| error_response(description));
    }
}

/// Completes `doc` (a serialised OpenAPI document) in place; see the module docs.
pub fn complete(doc: &mut Value) {
    let mut request_schemas = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, op) in item.iter_mut() {
                if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    continue;
                }
                complete_operation(path, op, &mut request_schemas);
            }
        }
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        schemas.insert("JsonValue".into(), json_value_schema());
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = request_schemas.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) {
            complete_request_schema(schema, Some(&name), &mut request_schemas);
        }
    }
}

fn complete_operation(path: &str, op: &mut Value, request_schemas: &mut Vec<String>) {
    let bearer = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    if bearer {
        add_response(op, "401", "No valid bearer token");
        add_response(op, "403", "The token lacks the ability this operation needs");
    }
    let mut has_query = false;
    let mut has_path = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            match p.get("in").and_then(Value::as_str) {
                Some("query") => {
                    has_query = true;
                    let param = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let mut required = false;
                    if let Some(schema) = p.get_mut("schema") {
                        refuse_nul_in_query(schema);
                        // `?page=` is the first page, as if it were left out.
                        if matches!(param.as_str(), "page" | "per_page")
                            && is_type(schema, "integer")
                            && schema.get("minimum").is_some()
                        {
                            let integer = schema.take();
                            *schema = json!({"anyOf": [integer, {"type": "string", "maxLength": 0}]});
                        }
                        for (_, _, rules) in super::rules::QUERY
                            .iter()
                            .filter(|(at, name, _)| (*at == "*" || *at == path) && *name == param)
                        {
                            required |= super::rules::apply(schema, rules);
                        }
                    }
                    if required {
                        p["required"] = Value::Bool(true);
                    }
                }
                Some("path") => has_path = true,
                _ => {}
            }
        }
    }
    if has_query {
        add_response(op, "422", "A query parameter fails its check; `error.details` names it");
    }
    if has_path {
        add_response(op, "404", "No such resource in this tenant (or a malformed id)");
    }
    let body = op.pointer_mut("/requestBody/content/application~1json/schema");
    if let Some(schema) = body {
        if let Some(name) = reference(schema) {
            request_schemas.push(name);
        } else {
            complete_request_schema(schema, None, request_schemas);
        }
        add_response(op, "400", "The body is not well-formed JSON");
        add_response(op, "413", "The body is larger than 1 MiB");
        add_response(op, "415", "The body is not `application/json`");
        add_response(op, "409", "A value that must be unique (slug, e-mail, name, Stripe id) is taken");
        add_response(op, "422", "A field fails its check; `error.details` names each one");
    }
}

fn reference(schema: &Value) -> Option<String> {
    schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")).map(str::to_owned)
}

fn refuse_nul_in_query(schema: &mut Value) {
    if is_type(schema, "string") && schema.get("pattern").is_none() && schema.get("enum").is_none() {
        schema["pattern"] = Value::from(QUERY);
    }
}

/// `type` is `t`, alone or with `null`.
fn is_type(schema: &Value, t: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(types)) => types.iter().any(|x| x == t),
        _ => false,
    }
}

fn complete_request_schema(schema: &mut Value, name: Option<&str>, request_schemas: &mut Vec<String>) {
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let mut newly_required = Vec::new();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for (field, property) in properties.iter_mut() {
        if required.contains(field) {
            not_null(property);
        }
        if let Some(r) = reference(property) {
            request_schemas.push(r);
            continue;
        }
        text_rule(property);
        free_form(property);
        if is_type(property, "array")
            && let Some(items) = property.get_mut("items")
        {
            text_rule(items);
            free_form(items);
        }
        for (_, _, rules) in super::rules::BODY.iter().filter(|(s, f, _)| Some(*s) == name && f == field) {
            if super::rules::apply(property, rules) {
                newly_required.push(Value::from(field.as_str()));
            }
        }
    }
    if !newly_required.is_empty() {
        let list = schema.as_object_mut().map(|o| o.entry("required").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = list {
            for f in newly_required {
                if !list.contains(&f) {
                    list.push(f);
                }
            }
        }
    }
}

/// Any JSON a free-form object may hold, as `extract::refuse_unsafe_values` lets it through: no NUL
/// in strings or keys, numbers within ±1e300 (`extract::MAX_JSON_NUMBER`).
fn json_value_schema() -> Value {
    let any = json!({"$ref": "#/components/schemas/JsonValue"});
    json!({
        "description": "Any JSON value: strings and keys without NUL, numbers within ±1e300.",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number", "minimum": -1e300, "maximum": 1e300},
            {"type": "string", "pattern": QUERY},
            {"type": "array", "items": any},
            {"type": "object", "propertyNames": {"pattern": QUERY}, "additionalProperties": any}
        ]
    })
}

/// A free-form object (metadata, config, business context): its keys and values as
/// [`json_value_schema`] says.
fn free_form(property: &mut Value) {
    if is_type(property, "object") && property.get("properties").is_none() && property.get("$ref").is_none() {
        property["propertyNames"] = json!({"pattern": QUERY});
        property["additionalProperties"] = json!({"$ref": "#/components/schemas/JsonValue"});
    }
}

/// A top-level string field: [`TEXT`], or [`PRESENT`] when marked `minLength: 1`.
/// Fields with their own pattern, format or enum keep it (stricter than [`TEXT`]).
fn text_rule(property: &mut Value) {
    if !is_type(property, "string") {
        return;
    }
    let Some(p) = property.as_object_mut() else { return };
    if p.contains_key("pattern") || p.contains_key("format") || p.contains_key("enum") {
        return;
    }
    let present = p.get("minLength").and_then(Value::as_u64).is_some_and(|n| n >= 1);
    p.insert("pattern".into(), Value::from(if present { PRESENT } else { TEXT }));
}

/// Drops `null` from a required field's type (`["string", "null"]` → `"string"`).
pub fn not_null(property: &mut Value) {
    let Some(p) = property.as_object_mut() else { return };
    if let Some(Value::Array(types)) = p.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let single = if kept.len() == 1 { kept[0].clone() } else { Value::Array(kept) };
        p.insert("type".into(), single);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = p.get_mut(key) {
            options.retain(|o| o.get("type") != Some(&Value::from("null")));
            if options.len() == 1 {
                let only = options.remove(0);
                p.remove(key);
                if let Value::Object(inner) = only {
                    let merged: Map<String, Value> = inner;
                    for (k, v) in merged {
                        p.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_lose_null_and_text_gets_its_pattern() {
        let mut doc = json!({
            "paths": {"/x": {"post": {
                "security": [{"bearer": []}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/R"}}}},
                "responses": {"201": {"description": "ok"}}
            }}},
            "components": {"schemas": {"R": {
                "type": "object", "required": ["name"],
                "properties": {
                    "name": {"type": ["string", "null"], "minLength": 1},
                    "note": {"type": ["string", "null"]},
                    "email": {"type": "string", "format": "email"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }
            }}}
        });
        complete(&mut doc);
        let r = &doc["components"]["schemas"]["R"]["properties"];
        assert_eq!(r["name"]["type"], "string");
        assert_eq!(r["name"]["pattern"], PRESENT);
        assert_eq!(r["note"]["pattern"], TEXT);
        assert!(r["email"].get("pattern").is_none());
        assert_eq!(r["tags"]["items"]["pattern"], TEXT);
        let responses = &doc["paths"]["/x"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "422"] {
            assert!(responses.get(status).is_some(), "{status}");
        }
    }

    #[test]
    fn the_patterns_say_what_the_checks_do() {
        let text = regex::Regex::new(TEXT).unwrap();
        let present = regex::Regex::new(PRESENT).unwrap();
        for s in ["", "plain", "two\nlines\tand\r", "caf\u{e9} \u{1F600}"] {
            assert!(text.is_match(s), "{s:?}");
        }
        for s in ["nul\u{0}", "bell\u{7}", "c1\u{85}", "del\u{7f}"] {
            assert!(!text.is_match(s), "{s:?}");
        }
        assert!(present.is_match(" x ") && present.is_match("\u{e9}"));
        assert!(!present.is_match("") && !present.is_match(" \n\t ") && !present.is_match("x\u{1}"));
    }
}
