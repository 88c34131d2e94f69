//! The OpenAPI 3.1 document of the whole HTTP API, built from the same tables the server runs
//! on: the collection table gives every collection's paths and its record schemas, the
//! project's field table its schema ([`schemas`]).
//!
//! The document is JSON built directly rather than through utoipa's builders (DESIGN.md's
//! choice): its schemas are unions (`anyOf` of required sets, `null`-able fields) generated
//! from tables, which utoipa's builders express only at several times the length, and its
//! derive macros describe Rust types, which these bodies are not.

mod operation;
mod schemas;

use axum::Json;
use domain::collections;
use operation::{Operation, operation};
use schemas::reference;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

pub async fn serve() -> Json<&'static Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(document))
}

fn object() -> Option<Value> {
    Some(json!({ "type": "object" }))
}

fn list_of(name: &str) -> Option<Value> {
    Some(json!({ "type": "array", "items": reference(name) }))
}

#[derive(Default)]
struct Paths(Map<String, Value>);

impl Paths {
    fn add(&mut self, path: &str, method: &str, operation: Operation) {
        let item = self.0.entry(path.to_owned()).or_insert_with(|| json!({}));
        item[method] = operation.build();
    }
}

fn page_params(operation: Operation) -> Operation {
    operation
        .query(
            "limit",
            json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            "At most this many",
        )
        .query(
            "offset",
            json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            "Skip this many",
        )
}

fn system_and_accounts(paths: &mut Paths) {
    paths.add(
        "/healthz",
        "get",
        operation("system", "Liveness and store reachability").public(),
    );
    paths.add(
        "/readyz",
        "get",
        operation(
            "system",
            "Readiness: 200 once the node takes traffic (store, and Redis in a cluster); 503 with the JSON error naming what is missing (details.unready)",
        )
        .public(),
    );
    paths.add(
        "/metrics",
        "get",
        operation(
            "system",
            "Prometheus metrics (OpenMetrics text); with --metrics-token, Authorization: Bearer <token>",
        )
        .public(),
    );
    paths.add(
        "/api/v1/openapi.json",
        "get",
        operation("system", "This document")
            .public()
            .ok("200", object()),
    );
    paths.add(
        "/api/v1/auth/login",
        "post",
        operation(
            "auth",
            "Log in with {email | username | login, password}; sets the session cookie. 401 for wrong credentials, 503 with Retry-After when too many passwords are being checked at once",
        )
        .public()
        .json("Login")
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/auth/logout",
        "post",
        operation(
            "auth",
            "End the session; its tokens die and its live connections close",
        )
        .ok("204", None),
    );
    paths.add(
        "/api/v1/users/me",
        "get",
        operation("users", "The current user").ok("200", Some(reference("User"))),
    );
    paths.add(
        "/api/v1/users/me",
        "patch",
        operation(
            "users",
            "Change your profile; a new password needs current_password",
        )
        .json("MyChange")
        .ok("200", Some(reference("User"))),
    );
    paths.add(
        "/api/v1/users",
        "get",
        operation("users", "All users (system administrators)").ok("200", list_of("User")),
    );
    paths.add(
        "/api/v1/users",
        "post",
        operation("users", "Create a user (system administrators)")
            .json("UserCreate")
            .ok("201", Some(reference("User"))),
    );
    paths.add(
        "/api/v1/users/{id}",
        "get",
        operation("users", "One user (system administrators, or yourself)")
            .path(&["id"])
            .ok("200", Some(reference("User"))),
    );
    paths.add(
        "/api/v1/users/{id}",
        "patch",
        operation(
            "users",
            "Change a user (system administrators; yourself without is_admin/is_active); is_active:false ends their sessions and connections; the last active system administrator cannot be demoted or deactivated (409)",
        )
        .path(&["id"])
        .json("UserChange")
        .ok("200", Some(reference("User"))),
    );
    paths.add(
        "/api/v1/ws/ticket/",
        "post",
        operation(
            "auth",
            "A single-use 30 s WebSocket ticket (120 a minute per user): {ticket, expires_in}",
        )
        .ok("200", object()),
    );
}

fn live(paths: &mut Paths) {
    // The live transports (crates/server/TRANSPORTS.md has the whole story).
    for (path, params, summary) in [
        (
            "/api/v1/projects/{project_id}/events",
            &["project_id"][..],
            "Server-Sent Events of one project (any member role; also at /api/projects/{project_id_or_key}/events). text/event-stream: first {type:connected,userId}, then id: seq and data: {type, data, tabId, timestamp}; Last-Event-ID or ?last_event_id= replays (or sends resync_required); ': keepalive' comments; ends on loss of access; 429 beyond the per-user stream cap",
        ),
        (
            "/api/v1/projects/events",
            &[][..],
            "Server-Sent Events of project lifecycle (project.created/updated/deleted) for your projects and database events (also at /api/projects/events)",
        ),
        (
            "/api/v1/users/events",
            &[][..],
            "Server-Sent Events of user.updated: your own; system administrators get every user's (also at /api/users/events)",
        ),
    ] {
        let mut op = operation("live", summary).path(params);
        if !params.is_empty() {
            op = op.query(
                "last_event_id",
                json!({ "type": "string" }),
                "Resume after this seq (as the Last-Event-ID header)",
            );
        }
        paths.add(path, "get", op);
    }
    paths.add(
        "/api/v1/projects/{project_id}/presence/",
        "get",
        operation(
            "live",
            "Who has a live connection open on the project, on every node of the cluster (members only)",
        )
        .path(&["project_id"])
        .ok("200", Some(reference("Presence"))),
    );
    paths.add(
        "/ws/v1/projects/{project_id}/",
        "get",
        operation(
            "live",
            "The native WebSocket (?ticket=T&since=N); a request without the WebSocket upgrade gets 400. Refusals are close codes after the upgrade: 4001 no usable ticket, 4003 not a Member or access lost, 4404 unknown /ws path, 1001 shutdown, 1002 protocol error, 1003 binary frame, 1007 invalid UTF-8, 1008 flooding or pong timeout, 1009 frame over 64 KiB",
        )
        .path(&["project_id"])
        .ok("101", None),
    );
}

fn projects_and_members(paths: &mut Paths) {
    paths.add(
        "/api/v1/projects",
        "get",
        operation("projects", "Your projects").ok("200", list_of("Project")),
    );
    paths.add(
        "/api/v1/projects",
        "post",
        operation(
            "projects",
            "Create a project; you become its Owner (a calendar is set after creating it)",
        )
        .json("ProjectCreate")
        .ok("201", Some(reference("Project"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}",
        "get",
        operation("projects", "One project")
            .path(&["project_id"])
            .ok("200", Some(reference("Project"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}",
        "patch",
        operation(
            "projects",
            "Change a project (Admin; If-Match: \"version\")",
        )
        .path(&["project_id"])
        .json("ProjectChange")
        .ok("200", Some(reference("Project"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}",
        "delete",
        operation("projects", "Delete a project (Owner)")
            .path(&["project_id"])
            .ok("204", None),
    );
    paths.add(
        "/api/v1/projects/{project_id}/members",
        "get",
        operation("members", "Members")
            .path(&["project_id"])
            .ok("200", list_of("Member")),
    );
    paths.add(
        "/api/v1/projects/{project_id}/members",
        "post",
        operation("members", "Add a member {user_id | email | username, role}")
            .path(&["project_id"])
            .json("MemberCreate")
            .ok("201", Some(reference("Member"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}/members/{id}",
        "get",
        operation("members", "One membership")
            .path(&["project_id", "id"])
            .ok("200", Some(reference("Member"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}/members/{id}",
        "patch",
        operation("members", "Change a role {role}")
            .path(&["project_id", "id"])
            .json("MemberChange")
            .ok("200", Some(reference("Member"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}/members/{id}",
        "delete",
        operation("members", "Remove a member (or leave)")
            .path(&["project_id", "id"])
            .ok("204", None),
    );
    paths.add(
        "/api/v1/projects/{project_id}/schedule",
        "get",
        operation(
            "schedule",
            "The schedule: project_finish, critical_path, computed_at, and every task's early/late dates, floats and is_critical (422 dependency_cycle with details.cycle, or an unusable calendar)",
        )
        .path(&["project_id"])
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/projects/{project_id}/log",
        "get",
        operation(
            "events",
            "Committed events after seq `since`: {events, latest_seq, first_seq (the oldest seq the log holds), resync_required (true when events after `since` are no longer in the log, or `since` is negative)}",
        )
        .path(&["project_id"])
        .query(
            "since",
            json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX }),
            "Events after this seq (default 0; negative asks for a resync)",
        )
        .query(
            "limit",
            json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
            "At most this many events (default 100, at most 1000 whatever is asked; 0 gives none)",
        )
        .ok("200", object()),
    );
}

fn records(paths: &mut Paths) {
    for collection in collections::ALL {
        let name = collection.name;
        let record = format!("Record.{name}");
        let base = format!("/api/v1/projects/{{project_id}}/{name}");
        let one = format!("{base}/{{id}}");
        paths.add(
            &base,
            "get",
            page_params(operation(name, &format!("List {name}")))
                .path(&["project_id"])
                .ok("200", list_of(&record)),
        );
        let create = if collection.upload_only {
            operation(
                name,
                &format!("Upload one of the {name} (multipart/form-data: task_id, file)"),
            )
            .multipart(json!({
                "type": "object",
                "properties": {
                    "task_id": schemas::uuid(),
                    "file": { "type": "string", "format": "binary" },
                },
                "required": ["task_id", "file"],
                "additionalProperties": false,
            }))
        } else {
            operation(name, &format!("Create one of the {name}")).json(&record)
        };
        paths.add(
            &base,
            "post",
            create
                .path(&["project_id"])
                .ok("201", Some(reference(&record))),
        );
        paths.add(
            &one,
            "get",
            operation(name, &format!("One of the {name}"))
                .path(&["project_id", "id"])
                .ok("200", Some(reference(&record))),
        );
        if collection.patchable {
            paths.add(
                &one,
                "patch",
                operation(
                    name,
                    &format!("Change one of the {name} (If-Match: \"version\")"),
                )
                .path(&["project_id", "id"])
                .json(&format!("RecordChange.{name}"))
                .ok("200", Some(reference(&record))),
            );
        }
        paths.add(
            &one,
            "delete",
            operation(
                name,
                &format!("Delete one of the {name}, with what depends on it"),
            )
            .path(&["project_id", "id"])
            .ok("204", None),
        );
    }
    for action in ["activate", "close", "cancel"] {
        paths.add(
            &format!("/api/v1/projects/{{project_id}}/sprints/{{id}}/{action}"),
            "post",
            operation("sprints", &format!("{action} a sprint"))
                .path(&["project_id", "id"])
                .ok("200", Some(reference("Record.sprints"))),
        );
    }
    paths.add(
        "/api/v1/projects/{project_id}/baselines/{id}/activate",
        "post",
        operation("baselines", "Make the baseline the active one")
            .path(&["project_id", "id"])
            .ok("200", Some(reference("Record.baselines"))),
    );
    paths.add(
        "/api/v1/projects/{project_id}/attachments/{id}/content",
        "get",
        operation(
            "attachments",
            "The attachment's bytes (Content-Disposition names it)",
        )
        .path(&["project_id", "id"]),
    );
}

/// Whiteboards' Yjs documents (CONTRACT §11); the y-websocket socket is
/// `GET /ws/v1/whiteboards/{whiteboard_id}` (TRANSPORTS.md).
fn whiteboards(paths: &mut Paths) {
    let board = "/api/v1/projects/{project_id}/whiteboards/{id}";
    paths.add(
        &format!("{board}/content"),
        "get",
        operation(
            "whiteboards",
            "The board's document as JSON: {elements (sorted by z), assets, meta}",
        )
        .path(&["project_id", "id"])
        .ok("200", object()),
    );
    let snapshot = json!({
        "type": "object",
        "properties": {
            "id": schemas::uuid(),
            "name": { "type": "string" },
            "created_at": { "type": "string", "format": "date-time" },
        },
        "required": ["id", "name", "created_at"],
    });
    paths.add(
        &format!("{board}/snapshots"),
        "get",
        operation(
            "whiteboards",
            "The board's saved versions, oldest first: [{id, name, created_at}]",
        )
        .path(&["project_id", "id"])
        .ok("200", Some(json!({ "type": "array", "items": snapshot }))),
    );
    paths.add(
        &format!("{board}/snapshots"),
        "post",
        operation(
            "whiteboards",
            "Saves the board's current document as a version {name} (Member+)",
        )
        .path(&["project_id", "id"])
        .json("SnapshotCreate")
        .ok("201", Some(snapshot)),
    );
    paths.add(
        &format!("{board}/snapshots/{{snapshot_id}}/restore"),
        "post",
        operation(
            "whiteboards",
            "Brings the board back to a version as a new change (Member+); returns the content",
        )
        .path(&["project_id", "id", "snapshot_id"])
        .ok("200", object()),
    );
}

/// Per-project webhooks (CONTRACT §12); the schemas come from `domain::webhooks`' limits and
/// event table ([`webhook_schemas`]).
fn webhooks(paths: &mut Paths) {
    let base = "/api/v1/projects/{project_id}/webhooks";
    let one = format!("{base}/{{id}}");
    paths.add(
        base,
        "get",
        operation(
            "webhooks",
            "The project's webhooks (Admin+); secrets are not shown",
        )
        .path(&["project_id"])
        .ok("200", list_of("Webhook")),
    );
    paths.add(
        base,
        "post",
        operation(
            "webhooks",
            "Create a webhook (Admin+) {url, events (dotted names or \"*\"), secret?, active?}: it receives the events committed after it, signed with its secret (generated when not given, and shown only in this answer). At most 20 per project; a URL naming an internal address literally is 422 unless the server runs with --webhooks-allow-private",
        )
        .path(&["project_id"])
        .json("WebhookCreate")
        .ok("201", Some(reference("WebhookCreated"))),
    );
    paths.add(
        &one,
        "get",
        operation("webhooks", "One webhook (Admin+)")
            .path(&["project_id", "id"])
            .ok("200", Some(reference("Webhook"))),
    );
    paths.add(
        &one,
        "patch",
        operation(
            "webhooks",
            "Change a webhook (Admin+) {url?, events?, secret?, active?}; its position in the log stays",
        )
        .path(&["project_id", "id"])
        .json("WebhookChange")
        .ok("200", Some(reference("Webhook"))),
    );
    paths.add(
        &one,
        "delete",
        operation("webhooks", "Delete a webhook and its deliveries (Admin+)")
            .path(&["project_id", "id"])
            .ok("204", None),
    );
    paths.add(
        &format!("{one}/deliveries"),
        "get",
        operation(
            "webhooks",
            "The webhook's deliveries, newest first (the last 1,000 are kept; Admin+)",
        )
        .path(&["project_id", "id"])
        .ok("200", list_of("WebhookDelivery")),
    );
}

/// The webhook bodies, from what `domain::webhooks` checks.
fn webhook_schemas(schemas: &mut Value) {
    use domain::webhooks::{
        ALL_EVENTS, MAX_EVENTS, MAX_URL_LEN, SECRET_MAX, SECRET_MIN, subscribable_events,
    };
    let mut names: Vec<&str> = subscribable_events().collect();
    names.push(ALL_EVENTS);
    let url = json!({
        "type": "string", "minLength": 1, "maxLength": MAX_URL_LEN,
        "description": "An http or https URL with a host and no user info",
    });
    let events = json!({
        "type": "array", "minItems": 1, "maxItems": MAX_EVENTS,
        "items": { "enum": names },
    });
    let secret = json!({
        "type": "string", "minLength": SECRET_MIN, "maxLength": SECRET_MAX,
        "pattern": "^[!-~]+$",
    });
    let input = |required: &[&str], secret: Value| {
        json!({
            "type": "object",
            "properties": {
                "url": url, "events": events, "secret": secret, "active": { "type": "boolean" },
            },
            "required": required,
            "additionalProperties": false,
        })
    };
    let nullable_secret = json!({ "anyOf": [secret, { "type": "null" }] });
    schemas["WebhookCreate"] = input(&["url", "events"], nullable_secret);
    schemas["WebhookChange"] = input(&[], secret.clone());
    let time = json!({ "type": "string", "format": "date-time" });
    let webhook_properties = json!({
        "id": schemas::uuid(),
        "project_id": schemas::uuid(),
        "url": { "type": "string" },
        "events": { "type": "array", "items": { "type": "string" } },
        "active": { "type": "boolean" },
        "last_seq": { "type": "integer", "description": "The last seq of the project's log this webhook has handled" },
        "created_at": time,
        "updated_at": time,
    });
    let webhook_required = json!([
        "id",
        "project_id",
        "url",
        "events",
        "active",
        "last_seq",
        "created_at",
        "updated_at"
    ]);
    schemas["Webhook"] = json!({
        "type": "object",
        "properties": webhook_properties,
        "required": webhook_required,
    });
    let mut created = schemas["Webhook"].clone();
    created["properties"]["secret"] = json!({ "type": "string" });
    created["required"]
        .as_array_mut()
        .expect("an array")
        .push(json!("secret"));
    schemas["WebhookCreated"] = created;
    schemas["WebhookDelivery"] = json!({
        "type": "object",
        "properties": {
            "id": schemas::uuid(),
            "webhook_id": schemas::uuid(),
            "seq": { "type": "integer" },
            "event": { "type": "string" },
            "outcome": { "enum": ["pending", "delivered", "refused", "gave_up", "skipped"] },
            "attempts": { "type": "integer" },
            "response_status": { "type": ["integer", "null"] },
            "error": { "type": ["string", "null"] },
            "created_at": time,
            "updated_at": time,
        },
        "required": [
            "id", "webhook_id", "seq", "event", "outcome", "attempts", "response_status",
            "error", "created_at", "updated_at",
        ],
    });
}

fn pusher_and_admin(paths: &mut Paths) {
    // Pusher (CONTRACT §10); the HTTP API under /apps/{app_id} is Pusher's own, signed with
    // the app's key and secret, not this document's authentication.
    paths.add(
        "/api/v1/pusher/auth",
        "post",
        operation(
            "pusher",
            "Pusher channel authorization (socket_id, channel_name) -> {auth} or, for presence channels, {auth, channel_data} with channel_data = JSON string {user_id, user_info:{name, email?}}. liveplan's channels by their access rules (private-project-/presence-project-: any member role; private-user-: that user; presence-whiteboard-: members of the board's project); the app's own private and presence channels for any signed-in user. 400 for a public channel, an invalid socket_id or channel name; 403 when not allowed",
        )
        .form_or_json(schemas::pusher_auth(true))
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/pusher/user-auth",
        "post",
        operation(
            "pusher",
            "Pusher user sign-in (socket_id) -> {auth, user_data} with user_data = JSON string {id: the liveplan user id, user_info:{name, email}}",
        )
        .form_or_json(schemas::pusher_auth(false))
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/admin/pusher",
        "get",
        operation(
            "admin",
            "The Pusher app's credentials {app_id, key, secret} (system administrators only)",
        )
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/admin/export",
        "get",
        operation(
            "admin",
            "All data as one JSON document (format liveplan-export-1): users with password hashes, projects, members and records with ids, versions and timestamps, whiteboards' Yjs updates and snapshots, each stream's last seq, attachment bytes in base64",
        )
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/admin/import",
        "post",
        operation(
            "admin",
            "Replace all data with an export's, keeping ids, versions, timestamps and passwords and raising seqs; the importing administrator keeps a way in; emits database_wiped. The document is checked whole first, with the API's rules: 422 validation_failed lists its problems in details.problems and nothing changes",
        )
        .json("Export")
        .ok("200", object()),
    );
    paths.add(
        "/api/v1/admin/projects",
        "delete",
        operation(
            "admin",
            "Remove every project; emits database_projects_wiped",
        )
        .ok("200", object()),
    );
}

pub fn document() -> Value {
    let mut paths = Paths::default();
    system_and_accounts(&mut paths);
    live(&mut paths);
    projects_and_members(&mut paths);
    records(&mut paths);
    whiteboards(&mut paths);
    webhooks(&mut paths);
    pusher_and_admin(&mut paths);
    let mut components = schemas::components();
    webhook_schemas(&mut components["schemas"]);
    components["schemas"]["SnapshotCreate"] = json!({
        "type": "object",
        "properties": { "name": {
            "type": "string", "minLength": 1,
            "maxLength": crate::whiteboard::rest::MAX_NAME, "pattern": r"\S",
        }},
        "required": ["name"],
    });
    components["schemas"]["Export"] = json!({
        "type": "object",
        "description": "An export document (GET /api/v1/admin/export)",
        "properties": { "format": { "const": domain::transfer::EXPORT_FORMAT } },
        "required": ["format"],
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "liveplan",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Project plans with every committed change pushed live. Errors are {\"error\": {code, message, details}}. A method a path does not list answers 405.",
        },
        "security": [{ "bearer": [] }, { "session_cookie": [] }],
        "paths": paths.0,
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` names a schema the document has.
    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but missing"
            );
        }
    }

    /// The record schemas come from the collection table: a required field of the table is
    /// required on create and not on change.
    #[test]
    fn record_schemas_follow_the_table() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let tasks = &schemas["Record.tasks"];
        assert!(
            tasks["required"]
                .as_array()
                .unwrap()
                .contains(&json!("name"))
        );
        assert!(schemas["RecordChange.tasks"].get("required").is_none());
        let working_days = &schemas["Record.calendars"]["properties"]["working_days"];
        assert_eq!(
            working_days["items"]["type"],
            json!("integer"),
            "{working_days}"
        );
        assert_eq!(working_days["minItems"], json!(1), "{working_days}");
    }
}
