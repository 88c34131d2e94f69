//! The y-websocket dialect (CONTRACT §11), `GET /ws/v1/whiteboards/{whiteboard_id}`: the
//! protocol's frames ([`protocol`]), a connection's state ([`session`]) and the glue between a
//! socket and its board's document actor ([`socket`]; the actor is `crate::whiteboard::doc`),
//! and [`router`]: the socket's route with the REST routes of `crate::whiteboard::rest`.

pub mod protocol;
pub mod session;
pub mod socket;

use crate::whiteboard::{WbState, WhiteboardNode};
use std::sync::Arc;

/// The socket and REST routes of whiteboard documents, served with the node as their state.
pub fn router<S: Clone + Send + Sync + 'static>(node: Arc<WhiteboardNode>) -> axum::Router<S> {
    use crate::whiteboard::rest;
    use axum::routing::{any, get, post};
    let base = "/api/v1/projects/{project_id}/whiteboards/{id}";
    axum::Router::new()
        .route("/ws/v1/whiteboards/{whiteboard_id}", any(socket::upgrade))
        .route(&format!("{base}/content"), get(rest::content))
        .route(
            &format!("{base}/snapshots"),
            get(rest::list_snapshots).post(rest::create_snapshot),
        )
        .route(
            &format!("{base}/snapshots/{{snapshot_id}}/restore"),
            post(rest::restore),
        )
        .with_state(WbState(node))
}
