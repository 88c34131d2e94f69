//! The y-websocket dialect (CONTRACT §11), `GET /ws/v1/whiteboards/{whiteboard_id}`: the
//! protocol's frames ([`protocol`]), a connection's state ([`session`]) and the glue between a
//! socket and its board's document actor ([`socket`]; the actor is `crate::whiteboard::doc`).

pub mod protocol;
pub mod session;
pub mod socket;
