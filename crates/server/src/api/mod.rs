//! The HTTP API under `/api/v1`, one module per resource.

pub mod accounts;
pub mod attachments;
pub mod projects;
pub mod pusher_auth;
pub mod pusher_http;
pub mod pusher_input;
pub mod records;
pub mod webhooks;

use crate::app::AppState;
use crate::http::error;
use crate::net::body_deadline::with_body_limit;
use axum::Router;
use axum::routing::{get, post};
use proto::ErrorCode;

pub fn router(state: &AppState) -> Router<AppState> {
    let config = &state.config;
    Router::new()
        .route("/auth/login", post(accounts::login))
        .route("/auth/logout", post(accounts::logout))
        .route("/users/me", get(accounts::me).patch(accounts::update_me))
        .route(
            "/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route(
            "/users/{id}",
            get(accounts::get_user).patch(accounts::update_user),
        )
        .route("/ws/ticket", post(accounts::mint_ticket))
        .route("/ws/ticket/", post(accounts::mint_ticket))
        .route("/projects", get(projects::list).post(projects::create))
        .route(
            "/projects/{project_id}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/projects/{project_id}/members",
            get(projects::list_members).post(projects::add_member),
        )
        .route(
            "/projects/{project_id}/members/{id}",
            get(projects::get_member)
                .patch(projects::change_member)
                .delete(projects::remove_member),
        )
        .route(
            "/projects/{project_id}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/projects/{project_id}/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/projects/{project_id}/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/projects/{project_id}/log", get(projects::log))
        .route("/projects/{project_id}/schedule", get(projects::schedule))
        .route(
            "/projects/{project_id}/attachments/{id}/content",
            get(attachments::download),
        )
        .route(
            "/projects/{project_id}/{collection}",
            // Uploads and saved versions are the large creates; each collection's own
            // size limit is then checked by the domain.
            with_body_limit(
                get(records::list).post(records::create),
                (config.max_upload_bytes + 64 * 1024).max(9 * 1024 * 1024),
            ),
        )
        .route(
            "/projects/{project_id}/{collection}/{id}",
            get(records::get)
                .patch(records::update)
                .delete(records::delete),
        )
        .route(
            "/projects/{project_id}/{collection}/{id}/{action}",
            post(records::action),
        )
        .route("/admin/export", get(projects::export))
        .route(
            "/admin/import",
            with_body_limit(post(projects::import), config.max_import_bytes),
        )
        .route(
            "/admin/projects",
            axum::routing::delete(projects::wipe_projects),
        )
        .route(
            "/pusher/auth",
            with_body_limit(
                post(pusher_auth::authorize_channel),
                pusher_input::MAX_AUTH_BODY,
            ),
        )
        .route(
            "/pusher/user-auth",
            with_body_limit(
                post(pusher_auth::authenticate_user),
                pusher_input::MAX_AUTH_BODY,
            ),
        )
        .route("/admin/pusher", get(pusher_auth::credentials))
        .route("/openapi.json", get(crate::openapi::serve))
        .fallback(|| async { error(ErrorCode::NotFound, "no such endpoint") })
}
