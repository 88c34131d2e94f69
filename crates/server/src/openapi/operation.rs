//! One operation of the document, with the answers every operation of this API may give.

use super::schemas::{reference, uuid};
use serde_json::{Map, Value, json};

pub struct Operation {
    value: Value,
    /// Whether a request body is read (so a wrong Content-Type gets 415).
    has_body: bool,
    public: bool,
    ok: (String, Option<Value>),
}

pub fn operation(tag: &str, summary: &str) -> Operation {
    Operation {
        value: json!({ "tags": [tag], "summary": summary, "parameters": [] }),
        has_body: false,
        public: false,
        ok: ("200".into(), None),
    }
}

fn parameters(value: &mut Value) -> &mut Vec<Value> {
    value["parameters"]
        .as_array_mut()
        .expect("parameters start as an array")
}

fn body(content: Map<String, Value>, required: bool) -> Value {
    json!({ "required": required, "content": content })
}

impl Operation {
    /// Path parameters: ids (a project also answers to its key, so `project_id` is any text).
    pub fn path(mut self, names: &[&str]) -> Operation {
        for name in names {
            let schema = if *name == "project_id" {
                json!({ "type": "string", "minLength": 1 })
            } else {
                uuid()
            };
            parameters(&mut self.value).push(json!({
                "name": name, "in": "path", "required": true, "schema": schema,
            }));
        }
        self
    }

    pub fn query(mut self, name: &str, schema: Value, description: &str) -> Operation {
        parameters(&mut self.value).push(json!({
            "name": name, "in": "query", "required": false, "schema": schema,
            "description": description,
        }));
        self
    }

    pub fn json(mut self, schema: &str) -> Operation {
        let mut content = Map::new();
        content.insert(
            "application/json".into(),
            json!({ "schema": reference(schema) }),
        );
        self.value["requestBody"] = body(content, true);
        self.has_body = true;
        self
    }

    /// A body as Pusher's clients send it: a form, or JSON.
    pub fn form_or_json(mut self, schema: Value) -> Operation {
        let mut content = Map::new();
        for media in ["application/x-www-form-urlencoded", "application/json"] {
            content.insert(media.into(), json!({ "schema": schema }));
        }
        self.value["requestBody"] = body(content, true);
        self.has_body = true;
        self
    }

    pub fn multipart(mut self, schema: Value) -> Operation {
        let mut content = Map::new();
        content.insert("multipart/form-data".into(), json!({ "schema": schema }));
        self.value["requestBody"] = body(content, true);
        self.has_body = true;
        self
    }

    /// No session needed.
    pub fn public(mut self) -> Operation {
        self.public = true;
        self
    }

    pub fn ok(mut self, status: &str, schema: Option<Value>) -> Operation {
        self.ok = (status.into(), schema);
        self
    }

    pub fn build(self) -> Value {
        let mut value = self.value;
        if value["parameters"].as_array().is_some_and(Vec::is_empty) {
            value.as_object_mut().map(|o| o.remove("parameters"));
        }
        let mut responses = Map::new();
        let mut success = json!({ "description": "Success" });
        if let Some(schema) = self.ok.1 {
            success["content"] = json!({ "application/json": { "schema": schema } });
        }
        responses.insert(self.ok.0, success);
        let mut errors = vec![
            ("400", "Malformed request"),
            ("403", "Not allowed"),
            ("404", "Not found"),
            ("409", "Conflict"),
            ("412", "Stale If-Match"),
            ("413", "Too large"),
            ("422", "Invalid"),
            ("429", "Rate limited"),
        ];
        if !self.public {
            errors.push(("401", "Not authenticated"));
        } else {
            // Login answers a wrong password with 401 too.
            errors.push(("401", "Not authenticated or wrong credentials"));
        }
        if self.has_body {
            errors.push(("415", "The body is not of a documented media type"));
        }
        for (status, description) in errors {
            responses.insert(status.into(), error_response(description));
        }
        responses.insert("503".into(), unavailable_response());
        value["responses"] = Value::Object(responses);
        if self.public {
            value["security"] = json!([]);
        }
        value
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": reference("Error") } },
    })
}

/// 503 `store_unavailable` (or another dependency away); `Retry-After` says when to try.
fn unavailable_response() -> Value {
    let mut response = error_response(
        "A dependency (the database) cannot be reached; nothing was changed or the change is all there",
    );
    response["headers"] = json!({
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": { "type": "integer" },
        },
    });
    response
}
