//! The OpenAPI 3 document of the whole HTTP API, built from the same tables the server runs
//! on: the collection table gives every collection's paths and its record schema.

use axum::Json;
use domain::collections::{self, Collection, Kind};
use std::sync::OnceLock;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr,
    Required, ResponseBuilder,
};

pub async fn serve() -> Json<&'static serde_json::Value> {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(|| serde_json::to_value(document()).unwrap_or_default()))
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn kind_schema(kind: Kind) -> Schema {
    let builder = ObjectBuilder::new();
    match kind {
        Kind::Text { .. } | Kind::Date | Kind::DateOrDateTime => {
            builder.schema_type(Type::String).into()
        }
        Kind::Choice(values) => builder
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .into(),
        Kind::Ref { .. } | Kind::UserRef => builder
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
            .into(),
        Kind::Number { .. } => builder.schema_type(Type::Number).into(),
        Kind::Integer { .. } => builder.schema_type(Type::Integer).into(),
        Kind::Bool => builder.schema_type(Type::Boolean).into(),
        Kind::RefList { .. } | Kind::Weekdays | Kind::Exceptions => {
            ArrayBuilder::new().items(RefOr::T(string())).into()
        }
        Kind::Json { .. } | Kind::Rank => Schema::default(),
    }
}

fn record_schema(collection: &Collection) -> Schema {
    let mut builder = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "A {}. Fields a client sends that are not listed are kept and returned.",
            collection.singular
        )))
        .property("id", kind_schema(Kind::UserRef))
        .property("project_id", kind_schema(Kind::UserRef))
        .property(
            "version",
            kind_schema(Kind::Integer {
                min: 1,
                max: i64::MAX,
            }),
        )
        .property("created_at", string())
        .property("updated_at", string());
    for field in collection.fields {
        let mut schema = kind_schema(field.kind);
        if let Schema::Object(object) = &mut schema {
            let note = if field.read_only { " Read-only." } else { "" };
            object.description = Some(format!("{}{note}", field.doc));
        }
        builder = builder.property(field.name, schema);
        if field.required {
            builder = builder.required(field.name);
        }
    }
    builder.into()
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            json_content(Ref::from_schema_name("Error")),
        )
        .build()
}

/// 503 `store_unavailable`: the database cannot be reached; `Retry-After` says when to try.
fn store_unavailable_response() -> utoipa::openapi::Response {
    let mut response = error_response(
        "The database cannot be reached; nothing was changed or the change is all there",
    );
    response.headers.insert(
        "Retry-After".into(),
        utoipa::openapi::header::HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
            .description(Some("Seconds to wait before trying again"))
            .build()
            .into(),
    );
    response
}

/// One operation with the usual error answers.
fn op(
    tag: &str,
    summary: &str,
    params: &[&str],
    body: Option<RefOr<Schema>>,
    ok: (&str, Option<RefOr<Schema>>),
) -> OperationBuilder {
    let mut builder = OperationBuilder::new().tag(tag).summary(Some(summary));
    for name in params {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string())),
        );
    }
    if let Some(body) = body {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(body))
                .required(Some(Required::True))
                .build(),
        ));
    }
    let mut ok_response = ResponseBuilder::new().description("Success");
    if let Some(schema) = ok.1 {
        ok_response = ok_response.content("application/json", json_content(schema));
    }
    builder
        .response(ok.0, ok_response.build())
        .response("400", error_response("Malformed request"))
        .response("401", error_response("Not authenticated"))
        .response("403", error_response("Not allowed"))
        .response("404", error_response("Not found"))
        .response("409", error_response("Conflict"))
        .response("412", error_response("Stale If-Match"))
        .response("413", error_response("Too large"))
        .response("422", error_response("Invalid"))
        .response("429", error_response("Rate limited"))
        .response("503", store_unavailable_response())
}

fn any() -> Option<RefOr<Schema>> {
    Some(RefOr::T(
        ObjectBuilder::new().schema_type(Type::Object).into(),
    ))
}

fn schema_ref(name: &str) -> Option<RefOr<Schema>> {
    Some(RefOr::Ref(Ref::from_schema_name(name)))
}

fn list_of(name: &str) -> Option<RefOr<Schema>> {
    Some(RefOr::T(
        ArrayBuilder::new()
            .items(Ref::from_schema_name(name))
            .into(),
    ))
}

pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut add = |path: &str, method: HttpMethod, operation: OperationBuilder| {
        paths = std::mem::take(&mut paths).path(path, PathItem::new(method, operation));
    };
    use HttpMethod::{Delete, Get, Patch, Post};
    add(
        "/healthz",
        Get,
        op(
            "system",
            "Liveness and store reachability",
            &[],
            None,
            ("200", None),
        ),
    );
    add(
        "/api/v1/openapi.json",
        Get,
        op("system", "This document", &[], None, ("200", any())),
    );
    add(
        "/api/v1/auth/login",
        Post,
        op(
            "auth",
            "Log in with {email | username, password}; sets the session cookie",
            &[],
            any(),
            ("200", any()),
        ),
    );
    add(
        "/api/v1/auth/logout",
        Post,
        op(
            "auth",
            "End the session; its tokens die and its live connections close",
            &[],
            None,
            ("204", None),
        ),
    );
    add(
        "/api/v1/users/me",
        Get,
        op(
            "users",
            "The current user",
            &[],
            None,
            ("200", schema_ref("User")),
        ),
    );
    add(
        "/api/v1/users/me",
        Patch,
        op(
            "users",
            "Change your profile; a new password needs current_password",
            &[],
            any(),
            ("200", schema_ref("User")),
        ),
    );
    add(
        "/api/v1/users",
        Get,
        op(
            "users",
            "All users (system administrators)",
            &[],
            None,
            ("200", list_of("User")),
        ),
    );
    add(
        "/api/v1/users",
        Post,
        op(
            "users",
            "Create a user (system administrators)",
            &[],
            any(),
            ("201", schema_ref("User")),
        ),
    );
    add(
        "/api/v1/users/{id}",
        Get,
        op(
            "users",
            "One user (system administrators, or yourself)",
            &["id"],
            None,
            ("200", schema_ref("User")),
        ),
    );
    add(
        "/api/v1/users/{id}",
        Patch,
        op(
            "users",
            "Change a user; is_active:false ends their sessions and connections",
            &["id"],
            any(),
            ("200", schema_ref("User")),
        ),
    );
    add(
        "/api/v1/ws/ticket/",
        Post,
        op(
            "auth",
            "A single-use 30 s WebSocket ticket (120 a minute per user)",
            &[],
            None,
            ("200", any()),
        ),
    );
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
        add(path, Get, op("live", summary, params, None, ("200", None)));
    }
    add(
        "/api/v1/projects/{project_id}/presence/",
        Get,
        op(
            "live",
            "Who has a native WebSocket open on the project, on every node of the cluster: [{user_id, display_name, connections}] (members only)",
            &["project_id"],
            None,
            ("200", any()),
        ),
    );
    add(
        "/ws/v1/projects/{project_id}/",
        Get,
        op(
            "live",
            "The native WebSocket (?ticket=T&since=N). Refusals are close codes after the upgrade: 4001 no usable ticket, 4003 not a Member or access lost, 4404 unknown /ws path, 1001 shutdown, 1003 binary frame, 1008 flooding or pong timeout, 1009 frame over 64 KiB",
            &["project_id"],
            None,
            ("101", None),
        ),
    );
    add(
        "/api/v1/projects",
        Get,
        op(
            "projects",
            "Your projects",
            &[],
            None,
            ("200", list_of("Project")),
        ),
    );
    add(
        "/api/v1/projects",
        Post,
        op(
            "projects",
            "Create a project; you become its Owner",
            &[],
            schema_ref("Project"),
            ("201", schema_ref("Project")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}",
        Get,
        op(
            "projects",
            "One project",
            &["project_id"],
            None,
            ("200", schema_ref("Project")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}",
        Patch,
        op(
            "projects",
            "Change a project (Admin)",
            &["project_id"],
            schema_ref("Project"),
            ("200", schema_ref("Project")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}",
        Delete,
        op(
            "projects",
            "Delete a project (Owner)",
            &["project_id"],
            None,
            ("204", None),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/members",
        Get,
        op(
            "members",
            "Members",
            &["project_id"],
            None,
            ("200", list_of("Member")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/members",
        Post,
        op(
            "members",
            "Add a member {user_id | email | username, role}",
            &["project_id"],
            schema_ref("Member"),
            ("201", schema_ref("Member")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/members/{id}",
        Get,
        op(
            "members",
            "One membership",
            &["project_id", "id"],
            None,
            ("200", schema_ref("Member")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/members/{id}",
        Patch,
        op(
            "members",
            "Change a role {role}",
            &["project_id", "id"],
            schema_ref("Member"),
            ("200", schema_ref("Member")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/members/{id}",
        Delete,
        op(
            "members",
            "Remove a member (or leave)",
            &["project_id", "id"],
            None,
            ("204", None),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/schedule",
        Get,
        op(
            "schedule",
            "The schedule: project_finish, critical_path, computed_at, and every task's early/late dates, floats and is_critical (422 dependency_cycle with details.cycle)",
            &["project_id"],
            None,
            ("200", any()),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/log",
        Get,
        op(
            "events",
            "Committed events after seq `since` (query: since ≥ 0, limit 0–1000; 0 gives none): {events, latest_seq, first_seq (the oldest seq the log holds), resync_required (true when events after `since` are no longer in the log, or `since` is negative)}",
            &["project_id"],
            None,
            ("200", any()),
        ),
    );
    for collection in collections::ALL {
        let name = collection.name;
        let schema = format!("Record.{name}");
        let base = format!("/api/v1/projects/{{project_id}}/{name}");
        let one = format!("{base}/{{id}}");
        add(
            &base,
            Get,
            op(
                name,
                &format!("List {name} (query: limit, offset)"),
                &["project_id"],
                None,
                ("200", list_of(&schema)),
            ),
        );
        let create_body = if collection.upload_only {
            None
        } else {
            schema_ref(&schema)
        };
        let create_summary = if collection.upload_only {
            format!("Upload one of the {name} (multipart/form-data: task_id, file)")
        } else {
            format!("Create one of the {name}")
        };
        add(
            &base,
            Post,
            op(
                name,
                &create_summary,
                &["project_id"],
                create_body,
                ("201", schema_ref(&schema)),
            ),
        );
        add(
            &one,
            Get,
            op(
                name,
                &format!("One of the {name}"),
                &["project_id", "id"],
                None,
                ("200", schema_ref(&schema)),
            ),
        );
        if collection.patchable {
            add(
                &one,
                Patch,
                op(
                    name,
                    &format!("Change one of the {name} (If-Match: \"version\")"),
                    &["project_id", "id"],
                    schema_ref(&schema),
                    ("200", schema_ref(&schema)),
                ),
            );
        }
        add(
            &one,
            Delete,
            op(
                name,
                &format!("Delete one of the {name}, with what depends on it"),
                &["project_id", "id"],
                None,
                ("204", None),
            ),
        );
    }
    for action in ["activate", "close", "cancel"] {
        add(
            &format!("/api/v1/projects/{{project_id}}/sprints/{{id}}/{action}"),
            Post,
            op(
                "sprints",
                &format!("{action} a sprint"),
                &["project_id", "id"],
                None,
                ("200", schema_ref("Record.sprints")),
            ),
        );
    }
    add(
        "/api/v1/projects/{project_id}/baselines/{id}/activate",
        Post,
        op(
            "baselines",
            "Make the baseline the active one",
            &["project_id", "id"],
            None,
            ("200", schema_ref("Record.baselines")),
        ),
    );
    add(
        "/api/v1/projects/{project_id}/attachments/{id}/content",
        Get,
        op(
            "attachments",
            "The attachment's bytes",
            &["project_id", "id"],
            None,
            ("200", None),
        ),
    );
    // Whiteboards' Yjs documents (CONTRACT §11); the y-websocket socket is
    // GET /ws/v1/whiteboards/{whiteboard_id} (TRANSPORTS.md).
    let board = "/api/v1/projects/{project_id}/whiteboards/{id}";
    add(
        &format!("{board}/content"),
        Get,
        op(
            "whiteboards",
            "The board's document as JSON: {elements (sorted by z), assets, meta}",
            &["project_id", "id"],
            None,
            ("200", any()),
        ),
    );
    add(
        &format!("{board}/snapshots"),
        Get,
        op(
            "whiteboards",
            "The board's saved versions, oldest first: [{id, name, created_at}]",
            &["project_id", "id"],
            None,
            ("200", any()),
        ),
    );
    add(
        &format!("{board}/snapshots"),
        Post,
        op(
            "whiteboards",
            "Saves the board's current document as a version {name} (Member+)",
            &["project_id", "id"],
            any(),
            ("201", any()),
        ),
    );
    add(
        &format!("{board}/snapshots/{{snapshot_id}}/restore"),
        Post,
        op(
            "whiteboards",
            "Brings the board back to a version as a new change (Member+); returns the content",
            &["project_id", "id", "snapshot_id"],
            None,
            ("200", any()),
        ),
    );
    // Pusher (CONTRACT §10); the HTTP API under /apps/{app_id} is Pusher's own, signed with
    // the app's key and secret, not this document's authentication.
    add(
        "/api/v1/pusher/auth",
        Post,
        op(
            "pusher",
            "Pusher channel authorization (body form-urlencoded or JSON: socket_id, channel_name) -> {auth} or, for presence channels, {auth, channel_data} with channel_data = JSON string {user_id, user_info:{name, email?}}. liveplan's channels by their access rules (private-project-/presence-project-: any member role; private-user-: that user; presence-whiteboard-: members of the board's project); the app's own private and presence channels for any signed-in user. 400 for a public channel, an invalid socket_id (^\\d+\\.\\d+$) or channel name; 403 when not allowed",
            &[],
            any(),
            ("200", any()),
        ),
    );
    add(
        "/api/v1/pusher/user-auth",
        Post,
        op(
            "pusher",
            "Pusher user sign-in (body form-urlencoded or JSON: socket_id) -> {auth, user_data} with user_data = JSON string {id: the liveplan user id, user_info:{name, email}}",
            &[],
            any(),
            ("200", any()),
        ),
    );
    add(
        "/api/v1/admin/pusher",
        Get,
        op(
            "admin",
            "The Pusher app's credentials {app_id, key, secret} (system administrators only)",
            &[],
            None,
            ("200", any()),
        ),
    );
    add(
        "/api/v1/admin/export",
        Get,
        op(
            "admin",
            "All data as one JSON document (format liveplan-export-1): users with password hashes, projects, members and records with ids, versions and timestamps, each stream's last seq, attachment bytes in base64",
            &[],
            None,
            ("200", any()),
        ),
    );
    add(
        "/api/v1/admin/import",
        Post,
        op(
            "admin",
            "Replace all data with an export's, keeping ids, versions, timestamps and passwords and raising seqs; the importing administrator keeps a way in; emits database_wiped. The document is checked whole first, with the API's rules: 422 validation_failed lists its problems in details.problems and nothing changes",
            &[],
            any(),
            ("200", any()),
        ),
    );
    add(
        "/api/v1/admin/projects",
        Delete,
        op(
            "admin",
            "Remove every project; emits database_projects_wiped",
            &[],
            None,
            ("200", any()),
        ),
    );

    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .schema(
            "Error",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "error",
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property("code", string())
                        .property("message", string())
                        .property("details", ObjectBuilder::new().schema_type(Type::Object))
                        .required("code")
                        .required("message"),
                )
                .required("error"),
        )
        .schema(
            "User",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("id", string())
                .property("email", string())
                .property("username", string())
                .property("display_name", string())
                .property("is_admin", kind_schema(Kind::Bool))
                .property("is_active", kind_schema(Kind::Bool)),
        )
        .schema(
            "Project",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("id", string())
                .property("name", string())
                .property("key", string())
                .property("start_date", string())
                .property("status_date", string())
                .property("calendar_id", string())
                .property(
                    "version",
                    kind_schema(Kind::Integer {
                        min: 1,
                        max: i64::MAX,
                    }),
                )
                .required("name"),
        )
        .schema(
            "Member",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("membership_id", string())
                .property("user_id", string())
                .property(
                    "role",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([1, 100, 200, 300, 400])),
                ),
        );
    for collection in collections::ALL {
        components = components.schema(
            format!("Record.{}", collection.name),
            record_schema(collection),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("liveplan")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Project plans with every committed change pushed live. Errors are {\"error\": {code, message, details}}."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}
