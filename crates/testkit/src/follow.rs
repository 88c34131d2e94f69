//! A following client shared by the delivery-under-faults tests: reads a project's events over
//! the native WebSocket or SSE, reconnecting with its last seq, and checks order as it goes.

use crate::server::TestServer;
use crate::sse::SseReader;
use crate::ws::{Ws, WsNext, ws_next};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// A member of a fresh project on `server`: (project, member token).
pub async fn project_with_member(server: &TestServer, name: &str) -> (Uuid, String) {
    let project = server.new_project(name).await;
    let (member, token) = server.new_user(name).await;
    server.new_member(project, member, 100).await;
    (project, token)
}

/// What a client read in one connection.
pub enum Read {
    Event(i64),
    Resync(i64),
    Other,
    Closed,
}

pub async fn ws_read(ws: &mut Ws) -> Read {
    match ws_next(ws).await {
        WsNext::Closed(_) => Read::Closed,
        WsNext::Json(frame) => match (frame["event_type"].as_str(), frame["seq"].as_i64()) {
            (Some("resync_required"), _) => {
                Read::Resync(frame["payload"]["latest_seq"].as_i64().unwrap())
            }
            (_, Some(seq)) => Read::Event(seq),
            _ => Read::Other,
        },
    }
}

pub async fn sse_read(sse: &mut SseReader) -> Read {
    match sse.next().await {
        None => Read::Closed,
        Some(message) => match (&message.id, &message.data) {
            (Some(id), _) => Read::Event(id.parse().unwrap()),
            (None, Some(_)) if message.json()["type"] == "resync_required" => {
                Read::Resync(message.json()["data"]["latest_seq"].as_i64().unwrap())
            }
            _ => Read::Other,
        },
    }
}

/// A connection read as events: the native WebSocket, an SSE stream, or either ([`Conn`]).
pub trait Reads {
    #[allow(async_fn_in_trait)] // used on one task; no `Send` bound needed
    async fn read(&mut self) -> Read;

    /// Reads until `got` holds `count` seqs (other frames skipped).
    #[allow(async_fn_in_trait)]
    async fn events(&mut self, got: &mut Vec<i64>, count: usize) {
        while got.len() < count {
            if let Read::Event(seq) = self.read().await {
                got.push(seq);
            }
        }
    }

    /// Reads until `got` ends with `last`; a resync or the end of the connection fails.
    #[allow(async_fn_in_trait)]
    async fn through(&mut self, got: &mut Vec<i64>, last: i64) {
        while got.last() != Some(&last) {
            match self.read().await {
                Read::Event(seq) => got.push(seq),
                Read::Other => {}
                Read::Resync(_) | Read::Closed => panic!("no resync or close expected"),
            }
        }
    }

    /// Reads until the connection ends; an event or a resync before it fails.
    #[allow(async_fn_in_trait)]
    async fn until_closed(&mut self) {
        loop {
            match self.read().await {
                Read::Closed => return,
                Read::Other => {}
                Read::Event(seq) => panic!("nothing more was committed, got {seq}"),
                Read::Resync(latest) => panic!("unexpected resync to {latest}"),
            }
        }
    }
}

impl Reads for Ws {
    async fn read(&mut self) -> Read {
        ws_read(self).await
    }
}

impl Reads for SseReader {
    async fn read(&mut self) -> Read {
        sse_read(self).await
    }
}

impl Reads for Conn {
    async fn read(&mut self) -> Read {
        Conn::read(self).await
    }
}

pub enum Conn {
    Ws(Ws),
    Sse(SseReader),
}

impl Conn {
    pub async fn open(
        server: &TestServer,
        token: &str,
        project: Uuid,
        sse: bool,
        since: i64,
    ) -> Conn {
        if sse {
            let path = format!("/api/v1/projects/{project}/events");
            Conn::Sse(server.sse(token, &path, Some(since)).await)
        } else {
            Conn::Ws(server.ws_project(token, project, Some(since)).await)
        }
    }

    pub async fn read(&mut self) -> Read {
        match self {
            Conn::Ws(ws) => ws_read(ws).await,
            Conn::Sse(sse) => sse_read(sse).await,
        }
    }
}

/// Reads one client's events until it holds `target` (from `done`), reconnecting with its last
/// seq whenever the connection ends, and also after a random number of frames when `chaos`.
pub async fn follow(
    server: Arc<TestServer>,
    token: String,
    project: Uuid,
    sse: bool,
    seed: u64,
    chaos: bool,
    mut done: watch::Receiver<i64>,
) -> Vec<i64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut got: Vec<i64> = Vec::new();
    loop {
        let last = got.last().copied().unwrap_or(0);
        if *done.borrow() == last && last > 0 {
            return got;
        }
        let mut conn = Conn::open(&server, &token, project, sse, last).await;
        let mut budget: u32 = if chaos {
            rng.random_range(1..40)
        } else {
            u32::MAX
        };
        loop {
            let target = *done.borrow();
            if target > 0 && got.last().copied() == Some(target) {
                return got;
            }
            let read = tokio::select! {
                read = conn.read() => read,
                _ = done.changed() => continue,
            };
            match read {
                Read::Event(seq) => {
                    let expected = got.last().copied().unwrap_or(0) + 1;
                    assert_eq!(
                        seq, expected,
                        "seed {seed}: a gap or a duplicate (sse: {sse})"
                    );
                    got.push(seq);
                    budget -= 1;
                    if budget == 0 {
                        // An abrupt drop: no close frame, no goodbye; every other time a
                        // native socket is reset (RST) instead of closed.
                        if let (Conn::Ws(ws), true) = (&conn, rng.random_bool(0.5))
                            && let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref()
                        {
                            tcp.set_zero_linger().unwrap();
                        }
                        break;
                    }
                }
                Read::Resync(latest) => panic!("seed {seed}: unexpected resync to {latest}"),
                Read::Other => {}
                Read::Closed => break,
            }
        }
    }
}
