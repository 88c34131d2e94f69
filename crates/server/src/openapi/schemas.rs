//! The document's schemas, built from the tables the validators run on (the collection table,
//! the project's fields, the roles), so the document and the server cannot drift apart; the few
//! bodies that have no table (users, login, members) are written next to what parses them.

use domain::accounts::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use domain::collections::{self, Collection, Field, Kind};
use domain::validate::{MAX_EXCEPTIONS, MAX_FIELD_NAME, MAX_UNKNOWN_FIELDS};
use proto::Role;
use serde_json::{Map, Value, json};

pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn date() -> Value {
    json!({ "type": "string", "format": "date" })
}

fn read_only(mut schema: Value) -> Value {
    schema["readOnly"] = json!(true);
    schema
}

/// A text of `min` to `max` characters; one that must not be empty must not be blank either.
fn text(min: usize, max: usize) -> Value {
    let mut schema = json!({ "type": "string", "minLength": min, "maxLength": max });
    if min > 0 {
        schema["pattern"] = json!(r"\S");
    }
    schema
}

/// What `domain::validate::check_kind` accepts for `kind`.
pub fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::Text { min, max } => text(min, max),
        Kind::Number { min, max } => json!({ "type": "number", "minimum": min, "maximum": max }),
        Kind::Integer { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Date => date(),
        Kind::DateOrDateTime => json!({ "anyOf": [
            date(),
            { "type": "string", "format": "date-time" },
        ]}),
        Kind::Choice(values) => json!({ "type": "string", "enum": values }),
        Kind::Ref { .. } | Kind::UserRef => uuid(),
        Kind::RefList { max, .. } => json!({
            "type": "array", "items": uuid(), "maxItems": max, "uniqueItems": true,
        }),
        Kind::Json { .. } => json!({}),
        Kind::Weekdays => json!({
            "type": "array",
            "items": { "type": "integer", "minimum": 1, "maximum": 7 },
            "minItems": 1, "maxItems": 7, "uniqueItems": true,
            "description": "ISO weekday numbers, 1 (Monday) to 7 (Sunday)",
        }),
        Kind::Exceptions => json!({
            "type": "array",
            "maxItems": MAX_EXCEPTIONS,
            "items": {
                "type": "object",
                "properties": {
                    "start": date(),
                    // The validator reads a null or absent end as the start day alone.
                    "end": nullable(date()),
                    "name": { "type": ["string", "null"] },
                    "is_working": { "type": "boolean" },
                },
                "required": ["start"],
            },
        }),
        Kind::Rank => json!({ "anyOf": [
            { "type": "number" },
            { "type": "string", "maxLength": 128 },
        ]}),
    }
}

/// `schema` or `null`.
pub fn nullable(schema: Value) -> Value {
    if schema.as_object().is_some_and(Map::is_empty) {
        return schema;
    }
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn field_schema(field: &Field) -> Value {
    let mut schema = kind_schema(field.kind);
    if field.nullable {
        schema = nullable(schema);
    }
    let note = if field.read_only {
        " Written by the server."
    } else {
        ""
    };
    schema["description"] = json!(format!("{}{note}", field.doc));
    if field.read_only {
        schema = read_only(schema);
    }
    schema
}

/// Fields every record has, written by the server.
fn record_envelope() -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert("id".into(), read_only(uuid()));
    properties.insert("project_id".into(), read_only(uuid()));
    properties.insert(
        "version".into(),
        read_only(json!({ "type": "integer", "minimum": 1 })),
    );
    properties.insert(
        "created_at".into(),
        read_only(json!({ "type": "string", "format": "date-time" })),
    );
    properties.insert(
        "updated_at".into(),
        read_only(json!({ "type": "string", "format": "date-time" })),
    );
    properties
}

/// Fields a client sends that the table does not list are kept, within these bounds.
fn extra_fields(schema: &mut Value, listed: usize) {
    schema["propertyNames"] = json!({ "minLength": 1, "maxLength": MAX_FIELD_NAME });
    schema["maxProperties"] = json!(listed + MAX_UNKNOWN_FIELDS);
}

/// A record of `collection`; `creating` lists the fields a create must give.
fn record_schema(collection: &Collection, creating: bool) -> Value {
    let mut properties = record_envelope();
    for field in collection.fields {
        properties.insert(field.name.into(), field_schema(field));
    }
    let listed = properties.len();
    let required: Vec<&str> = collection
        .fields
        .iter()
        .filter(|f| creating && f.required && !f.read_only)
        .map(|f| f.name)
        .collect();
    let mut schema = json!({
        "type": "object",
        "description": format!(
            "A {}. Fields a client sends that are not listed are kept and returned.",
            collection.singular
        ),
        "properties": properties,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    extra_fields(&mut schema, listed);
    schema
}

fn project_schema(creating: bool, patching: bool) -> Value {
    let mut properties = Map::new();
    properties.insert("id".into(), read_only(uuid()));
    for (name, kind) in domain::projects::PROJECT_FIELDS {
        // A new project has no calendar of its own yet to point at.
        if creating && *name == "calendar_id" {
            continue;
        }
        let mut schema = kind_schema(*kind);
        if *name == "key" {
            schema["pattern"] = json!(domain::projects::KEY_PATTERN);
        }
        if *name != "name" {
            schema = nullable(schema);
        }
        properties.insert((*name).into(), schema);
    }
    for name in ["version", "role"] {
        properties.insert(name.into(), read_only(json!({ "type": "integer" })));
    }
    for name in ["created_at", "updated_at"] {
        properties.insert(
            name.into(),
            read_only(json!({ "type": "string", "format": "date-time" })),
        );
    }
    let mut schema = json!({ "type": "object", "properties": properties });
    if !patching {
        schema["required"] = json!(["name"]);
    }
    schema["propertyNames"] = json!({ "minLength": 1, "maxLength": MAX_FIELD_NAME });
    schema["maxProperties"] = json!(domain::projects::MAX_PROJECT_FIELDS);
    schema
}

fn role() -> Value {
    let levels: Vec<i64> = Role::ALL.iter().map(|r| r.level()).collect();
    json!({ "type": "integer", "enum": levels,
        "description": "1 Viewer, 100 Member, 200 Scheduler, 300 Admin, 400 Owner" })
}

fn email() -> Value {
    json!({ "type": "string", "maxLength": 254, "pattern": r"^[^@\s]+@\S+$" })
}

fn username() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" })
}

/// A password's bound in characters that stays within the byte limit whatever they are.
fn password() -> Value {
    json!({ "type": "string", "minLength": MIN_PASSWORD_CHARS, "maxLength": MAX_PASSWORD_BYTES / 4 })
}

/// A user body: `admin` adds the fields only system administrators set; unknown fields are
/// refused (`domain::accounts::parse_user_input`).
fn user_input(admin: bool, required: &[&str]) -> Value {
    let mut properties = Map::new();
    properties.insert("email".into(), email());
    properties.insert("username".into(), nullable(username()));
    properties.insert("display_name".into(), text(1, 200));
    properties.insert("password".into(), password());
    properties.insert(
        "current_password".into(),
        json!({ "type": "string", "maxLength": MAX_PASSWORD_BYTES / 4 }),
    );
    if admin {
        properties.insert("is_admin".into(), json!({ "type": "boolean" }));
        properties.insert("is_active".into(), json!({ "type": "boolean" }));
    }
    properties.insert("id".into(), read_only(uuid()));
    properties.insert("version".into(), read_only(json!({ "type": "integer" })));
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn user() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": uuid(),
            "email": { "type": "string" },
            "username": { "type": ["string", "null"] },
            "display_name": { "type": ["string", "null"] },
            "is_admin": { "type": "boolean" },
            "is_active": { "type": "boolean" },
            "version": { "type": "integer" },
            "created_at": { "type": "string", "format": "date-time" },
            "updated_at": { "type": "string", "format": "date-time" },
        },
        "required": ["id", "email", "is_admin", "is_active"],
    })
}

/// `{email | username | login, password}`: one of the three names the account.
fn login() -> Value {
    let options: Vec<Value> = ["email", "username", "login"]
        .iter()
        .map(|name| {
            json!({
                "type": "object",
                "properties": {
                    *name: { "type": "string", "minLength": 1, "maxLength": 254 },
                    "password": { "type": "string", "maxLength": MAX_PASSWORD_BYTES / 4 },
                },
                "required": [name, "password"],
            })
        })
        .collect();
    json!({ "anyOf": options })
}

/// `{user_id | email | username, role}`.
fn member_create() -> Value {
    let options: Vec<Value> = [
        ("user_id", uuid()),
        ("email", email()),
        ("username", username()),
    ]
    .into_iter()
    .map(|(name, schema)| {
        json!({
            "type": "object",
            "properties": { name: schema, "role": role() },
            "required": [name, "role"],
        })
    })
    .collect();
    json!({ "anyOf": options })
}

fn member() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": uuid(),
            "membership_id": uuid(),
            "project_id": uuid(),
            "user_id": uuid(),
            "role": role(),
            "version": { "type": "integer" },
            "created_at": { "type": "string", "format": "date-time" },
            "updated_at": { "type": "string", "format": "date-time" },
            "user": nullable(json!({
                "type": "object",
                "properties": {
                    "id": uuid(),
                    "email": { "type": "string" },
                    "username": { "type": ["string", "null"] },
                    "display_name": { "type": ["string", "null"] },
                },
            })),
        },
        "required": ["membership_id", "user_id", "role"],
    })
}

fn error() -> Value {
    json!({
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "details": { "type": ["object", "null"] },
                },
                "required": ["code", "message"],
            },
        },
        "required": ["error"],
    })
}

fn presence() -> Value {
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "user_id": uuid(),
                "display_name": { "type": ["string", "null"] },
                "connections": { "type": "integer", "minimum": 1 },
            },
            "required": ["user_id", "connections"],
        },
    })
}

/// `socket_id` and, for channels, `channel_name`, as Pusher's clients send them.
pub fn pusher_auth(channel: bool) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "socket_id".into(),
        json!({ "type": "string", "pattern": r"^\d{1,20}\.\d{1,20}$" }),
    );
    let mut required = vec!["socket_id"];
    if channel {
        properties.insert(
            "channel_name".into(),
            json!({
                "type": "string",
                "maxLength": crate::pusher::channel::MAX_CHANNEL_NAME,
                "pattern": "^(private|presence)-[A-Za-z0-9_=@,.;-]*$",
                "description": "A private or presence channel (public channels need no authorization)",
            }),
        );
        required.push("channel_name");
    }
    // Pusher's clients send flat fields (a form): in JSON any other field is a string, a
    // number or null, as `api::pusher_input` reads them.
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": { "type": ["string", "number", "null"] },
    })
}

pub fn components() -> Value {
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error());
    schemas.insert("User".into(), user());
    schemas.insert(
        "UserCreate".into(),
        user_input(true, &["email", "password"]),
    );
    schemas.insert("UserChange".into(), user_input(true, &[]));
    schemas.insert("MyChange".into(), user_input(false, &[]));
    schemas.insert("Login".into(), login());
    schemas.insert("Project".into(), project_schema(false, false));
    schemas.insert("ProjectCreate".into(), project_schema(true, false));
    schemas.insert("ProjectChange".into(), project_schema(false, true));
    schemas.insert("Member".into(), member());
    schemas.insert("MemberCreate".into(), member_create());
    schemas.insert(
        "MemberChange".into(),
        json!({ "type": "object", "properties": { "role": role() }, "required": ["role"] }),
    );
    schemas.insert("Presence".into(), presence());
    for collection in collections::ALL {
        schemas.insert(
            format!("Record.{}", collection.name),
            record_schema(collection, true),
        );
        schemas.insert(
            format!("RecordChange.{}", collection.name),
            record_schema(collection, false),
        );
    }
    json!({
        "schemas": schemas,
        "securitySchemes": {
            "bearer": { "type": "http", "scheme": "bearer" },
            "session_cookie": {
                "type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE,
                "description": "Writes with the cookie must carry a same-origin Origin (or Referer) header",
            },
        },
    })
}
