//! A focused checker of real responses against `api/openapi.json`: the JSON Schema keywords the
//! document uses, local `$ref`s, and an OpenAPI response's headers and content. Any other schema
//! keyword is an error, so the document cannot start relying on a keyword this checker would
//! silently skip (a full JSON-Schema crate would add ~20 crates for the dozen keywords used here).

use regex::Regex;
use serde_json::Value;

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 4] = ["description", "title", "example", "examples"];

/// The OpenAPI document.
pub struct Document {
    root: Value,
}

/// A response as received.
pub struct Received<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
    pub body: &'a [u8],
}

impl Document {
    /// The document the API embeds (and serves at /openapi.json).
    pub fn embedded() -> Self {
        Self::parse(api::openapi::DOCUMENT)
    }

    /// A document from its JSON text.
    pub fn parse(text: &str) -> Self {
        Self { root: serde_json::from_str(text).expect("the OpenAPI document is JSON") }
    }

    /// The raw document.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Follows `$ref`s (`#/a/b`) until a value without one.
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..16 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return Ok(value) };
            let pointer = reference.strip_prefix('#').ok_or_else(|| format!("only local $refs: {reference}"))?;
            value = self.root.pointer(pointer).ok_or_else(|| format!("dangling $ref {reference}"))?;
        }
        Err("a $ref cycle".to_owned())
    }

    /// The operation `method` (lower case) of `path`, if documented.
    pub fn operation(&self, path: &str, method: &str) -> Option<&Value> {
        self.root["paths"].get(path)?.get(method)
    }

    /// The documented response of `status` for an operation.
    pub fn response(&self, path: &str, method: &str, status: u16) -> Result<&Value, String> {
        let operation = self.operation(path, method).ok_or_else(|| format!("{method} {path} is not documented"))?;
        let response = operation["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("{status} is not documented for {method} {path}"))?;
        self.resolve(response)
    }

    /// Checks `received` against a (resolved or `$ref`) OpenAPI response object: every required
    /// header present, every documented header valid, the content type documented and the body
    /// valid against its schema, or no body when no content is documented.
    pub fn check_response(&self, response: &Value, received: &Received<'_>) -> Result<(), String> {
        let response = self.resolve(response)?;
        for key in response.as_object().into_iter().flat_map(|o| o.keys()) {
            if !["description", "headers", "content"].contains(&key.as_str()) {
                return Err(format!("unsupported response field {key}"));
            }
        }
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header)?;
            let value = received.headers.get(name.as_str());
            match value {
                None if header["required"] == true => return Err(format!("required header {name} is missing")),
                None => {}
                Some(value) => {
                    let text = value.to_str().map_err(|_| format!("header {name} is not ASCII"))?;
                    let schema = self.resolve(&header["schema"])?;
                    // A header is text: compare it as the type its schema names.
                    let instance = if schema["type"] == "integer" {
                        text.parse::<i64>()
                            .map(Value::from)
                            .map_err(|_| format!("header {name}: {text:?} is no integer"))?
                    } else {
                        Value::from(text)
                    };
                    self.validate(schema, &instance, &format!("header {name}"))?;
                }
            }
        }
        match response.get("content").and_then(Value::as_object) {
            None if received.body.is_empty() => Ok(()),
            None => Err(format!("no content is documented, but the body has {} bytes", received.body.len())),
            Some(content) => {
                let content_type = received
                    .headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
                    .ok_or("no Content-Type")?;
                let media =
                    content.get(&content_type).ok_or_else(|| format!("undocumented Content-Type {content_type}"))?;
                let body: Value =
                    serde_json::from_slice(received.body).map_err(|e| format!("the body is not JSON: {e}"))?;
                self.validate(&media["schema"], &body, "body")
            }
        }
    }

    /// Checks `instance` against `schema`; the error names where (`at`) and why.
    pub fn validate(&self, schema: &Value, instance: &Value, at: &str) -> Result<(), String> {
        let object = schema.as_object().ok_or_else(|| format!("{at}: the schema is not an object"))?;
        for (keyword, value) in object {
            match keyword.as_str() {
                "$ref" => self.validate(self.resolve(schema)?, instance, at)?,
                "type" => {
                    let names: Vec<&str> = match value {
                        Value::String(name) => vec![name.as_str()],
                        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                        _ => return Err(format!("{at}: bad type keyword")),
                    };
                    if !names.iter().any(|name| has_type(instance, name)) {
                        return Err(format!("{at}: {instance} is not of type {value}"));
                    }
                }
                "enum" => {
                    if !value.as_array().is_some_and(|values| values.contains(instance)) {
                        return Err(format!("{at}: {instance} is not one of {value}"));
                    }
                }
                "const" => {
                    if value != instance {
                        return Err(format!("{at}: {instance} is not {value}"));
                    }
                }
                "minimum" | "maximum" => {
                    let (Some(number), Some(bound)) = (instance.as_f64(), value.as_f64()) else { continue };
                    let below = keyword == "minimum" && number < bound;
                    if below || (keyword == "maximum" && number > bound) {
                        return Err(format!("{at}: {instance} is beyond the {keyword} {value}"));
                    }
                }
                "minLength" => {
                    let (Some(text), Some(min)) = (instance.as_str(), value.as_u64()) else { continue };
                    if (text.chars().count() as u64) < min {
                        return Err(format!("{at}: {instance} is shorter than {min}"));
                    }
                }
                "pattern" => {
                    let Some(text) = instance.as_str() else { continue };
                    let pattern = value.as_str().ok_or_else(|| format!("{at}: bad pattern"))?;
                    let regex = Regex::new(pattern).map_err(|e| format!("{at}: pattern {pattern}: {e}"))?;
                    if !regex.is_match(text) {
                        return Err(format!("{at}: {instance} does not match {pattern}"));
                    }
                }
                "minItems" | "maxItems" => {
                    let (Some(items), Some(bound)) = (instance.as_array(), value.as_u64()) else { continue };
                    let n = items.len() as u64;
                    if (keyword == "minItems" && n < bound) || (keyword == "maxItems" && n > bound) {
                        return Err(format!("{at}: {n} items is beyond the {keyword} {bound}"));
                    }
                }
                "items" => {
                    for (i, item) in instance.as_array().into_iter().flatten().enumerate() {
                        self.validate(value, item, &format!("{at}[{i}]"))?;
                    }
                }
                "required" => {
                    let Some(fields) = instance.as_object() else { continue };
                    for name in value.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !fields.contains_key(name) {
                            return Err(format!("{at}: the required field {name} is missing"));
                        }
                    }
                }
                "properties" => {
                    let Some(fields) = instance.as_object() else { continue };
                    for (name, property) in value.as_object().into_iter().flatten() {
                        if let Some(field) = fields.get(name) {
                            self.validate(property, field, &format!("{at}.{name}"))?;
                        }
                    }
                }
                "additionalProperties" => {
                    let Some(fields) = instance.as_object() else { continue };
                    if value != false {
                        return Err(format!("{at}: only additionalProperties: false is supported"));
                    }
                    let known = object.get("properties").and_then(Value::as_object);
                    if let Some(extra) = fields.keys().find(|name| !known.is_some_and(|k| k.contains_key(*name))) {
                        return Err(format!("{at}: the field {extra} is not documented"));
                    }
                }
                "anyOf" => {
                    let branches = value.as_array().ok_or_else(|| format!("{at}: bad anyOf"))?;
                    let errors: Vec<String> =
                        branches.iter().filter_map(|branch| self.validate(branch, instance, at).err()).collect();
                    if errors.len() == branches.len() {
                        return Err(format!("{at}: matches no anyOf branch: {}", errors.join("; ")));
                    }
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => return Err(format!("{at}: the checker does not support the keyword {other}")),
            }
        }
        Ok(())
    }
}

fn has_type(instance: &Value, name: &str) -> bool {
    match name {
        "object" => instance.is_object(),
        "array" => instance.is_array(),
        "string" => instance.is_string(),
        "boolean" => instance.is_boolean(),
        "null" => instance.is_null(),
        "number" => instance.is_number(),
        "integer" => instance.is_i64() || instance.is_u64(),
        _ => false,
    }
}
