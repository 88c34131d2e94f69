//! One whiteboard connection's frames from its board's actor: updates relayed from the other
//! clients, awareness, and the answers to its own messages.
//!
//! While the connection's task is parked on an empty outbox, the actor writes a frame to the
//! socket itself ([`DirectSocket`], one non-blocking `sendmsg`), as the hub's fan-out does for
//! the native dialects: a relayed update would otherwise cost a wake-up of the socket's task and
//! a scheduler round trip per delivery. Anything else (a frame already queued, a task holding a
//! frame it has not written yet, a socket that would block) is queued, and the task writes it.
//!
//! - **Order.** The actor's frames reach the client in the order it pushed them: it writes
//!   directly only while nothing is queued and the task holds nothing; a write the kernel took
//!   only part of leaves its rest in the socket's backlog, which goes out before anything else,
//!   and an empty frame in the queue tells the task to flush it.
//! - **Bounds.** At most [`CLIENT_QUEUE`] frames queued: a client that cannot take them is too
//!   slow and is dropped (1013); y-websocket reconnects and resyncs.
//! - **Closing.** [`Outbox::close`] ends the connection with a close code: what was queued is
//!   dropped (the client resyncs when it reconnects), and nothing more is written. Once the
//!   task begins its close handshake it [`Outbox::detach`]es, so no data frame can follow the
//!   close frame.

use crate::net::direct::DirectSocket;
use bytes::Bytes;
use hub::{DirectOutcome, DirectWrite};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// Frames a client may have queued before it counts as too slow and is dropped.
pub const CLIENT_QUEUE: usize = 512;
/// Queue capacity an empty outbox keeps; a larger one (after a burst) is given back.
const KEPT_CAPACITY: usize = 8;

/// What the connection's task takes from its outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    /// A frame to send; empty: only flush the socket (the actor's direct write left a rest).
    Frame(Bytes),
    Close(u16, &'static str),
}

/// The actor's side and the task's side of one connection's frames.
pub struct Outbox {
    direct: Option<Arc<DirectSocket>>,
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    closed: Option<(u16, &'static str)>,
    /// The task waits in [`Outbox::recv`] with nothing queued or in hand: only then may the
    /// actor write to the socket itself.
    parked: bool,
    /// The task is closing the socket (or gone): nothing more is written or queued.
    detached: bool,
    /// A direct write went out since the task last asked ([`Outbox::take_wrote`]).
    wrote: bool,
}

impl Outbox {
    /// `direct`: the socket's shared writer, when the request's TCP connection is known.
    pub fn new(direct: Option<Arc<DirectSocket>>) -> Arc<Outbox> {
        Arc::new(Outbox {
            direct,
            state: Mutex::default(),
            notify: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every step leaves the state whole, so a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `frame` (written now, or queued); `false` when the queue is full: the client is
    /// too slow, and the caller drops it. A closed or detached outbox takes frames and forgets
    /// them.
    pub fn push(&self, frame: &Bytes) -> bool {
        let mut s = self.state();
        if s.closed.is_some() || s.detached {
            return true;
        }
        if s.parked
            && s.queue.is_empty()
            && let Some(direct) = &self.direct
        {
            match direct.try_write(frame) {
                DirectOutcome::Sent => {
                    s.wrote = true;
                    return true;
                }
                DirectOutcome::Started => {
                    s.wrote = true;
                    s.queue.push_back(Bytes::new());
                    self.notify.notify_one();
                    return true;
                }
                DirectOutcome::Refused => {}
            }
        }
        if s.queue.len() >= CLIENT_QUEUE {
            return false;
        }
        s.queue.push_back(frame.clone());
        self.notify.notify_one();
        true
    }

    /// Ends the connection with `code`: the task's next [`Outbox::recv`] returns it. The first
    /// close wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut s = self.state();
        if s.closed.is_none() {
            s.closed = Some((code, reason));
            s.queue = VecDeque::new();
            self.notify.notify_one();
        }
    }

    /// The task is closing the socket: from now on nothing is written to it.
    pub fn detach(&self) {
        let mut s = self.state();
        s.detached = true;
        s.parked = false;
        s.queue = VecDeque::new();
    }

    /// Whether a direct write went out since the last call (the task's keepalive clock).
    pub fn take_wrote(&self) -> bool {
        std::mem::take(&mut self.state().wrote)
    }

    /// The next frame, or the close. Cancel-safe: a frame is taken only when it is returned,
    /// so this can wait in a `select!` beside the socket's reads and timers.
    pub async fn recv(&self) -> Out {
        loop {
            {
                let mut s = self.state();
                // Whatever this returns, the task holds it until written: until it parks
                // again, the actor queues rather than writes past it.
                s.parked = false;
                if let Some((code, reason)) = s.closed {
                    return Out::Close(code, reason);
                }
                if let Some(frame) = s.queue.pop_front() {
                    return Out::Frame(frame);
                }
                if s.queue.capacity() > KEPT_CAPACITY {
                    // An idle connection should not keep the capacity of its largest burst;
                    // a small one is kept, so a busy connection does not allocate per frame.
                    s.queue = VecDeque::new();
                }
                s.parked = !s.detached;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::direct::Framing;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    async fn connected_pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    fn binary_outbox(server: &Arc<TcpStream>) -> Arc<Outbox> {
        Outbox::new(Some(DirectSocket::new(
            server.clone(),
            Framing::WebSocketBinary,
        )))
    }

    /// The outbox's task, spawned and parked in `recv`.
    async fn park(outbox: &Arc<Outbox>) -> JoinHandle<Out> {
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.recv().await })
        };
        for _ in 0..500 {
            if outbox.state().parked {
                return waiting;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the task did not park within 5 s");
    }

    /// Reads one unmasked server frame of at most 125 bytes: its opcode and payload.
    async fn read_frame(client: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut head))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        client.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    #[tokio::test]
    async fn a_parked_task_lets_the_actor_write_binary_frames_itself() {
        let (server, mut client) = connected_pair().await;
        let outbox = binary_outbox(&server);
        // Not parked yet (the task has not asked): queued.
        assert!(outbox.push(&Bytes::from_static(b"one")));
        assert_eq!(outbox.recv().await, Out::Frame(Bytes::from_static(b"one")));
        // The task waits with nothing queued: the next frame goes straight to the socket.
        let waiting = park(&outbox).await;
        assert!(outbox.push(&Bytes::from_static(b"two")));
        assert_eq!(read_frame(&mut client).await, (0x82, b"two".to_vec()));
        assert!(outbox.take_wrote());
        assert!(!outbox.take_wrote());
        assert!(
            !waiting.is_finished(),
            "a direct write does not wake the task"
        );
        waiting.abort();
    }

    #[tokio::test]
    async fn a_frame_in_hand_keeps_later_frames_behind_it() {
        let (server, mut client) = connected_pair().await;
        let outbox = binary_outbox(&server);
        let waiting = park(&outbox).await;
        // A socket that takes nothing more: the parked task's frame is queued, and the task
        // wakes up holding it.
        let filler = [0u8; 65536];
        for _ in 0..10_000 {
            if server.try_write(&filler).is_err() {
                break;
            }
        }
        assert!(outbox.push(&Bytes::from_static(b"b")));
        let in_hand = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the task is woken")
            .unwrap();
        assert_eq!(in_hand, Out::Frame(Bytes::from_static(b"b")));
        // The socket takes bytes again, but "b" is not written yet: "c" must wait behind it.
        let mut sink = vec![0u8; 1 << 20];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), client.read(&mut sink)).await
        {
            assert!(n > 0);
        }
        assert!(outbox.push(&Bytes::from_static(b"c")));
        assert!(!outbox.take_wrote(), "written past the frame in hand");
        assert_eq!(outbox.recv().await, Out::Frame(Bytes::from_static(b"c")));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_close_drops_what_was_queued() {
        let outbox = Outbox::new(None);
        for _ in 0..CLIENT_QUEUE {
            assert!(outbox.push(&Bytes::from_static(b"x")));
        }
        assert!(!outbox.push(&Bytes::from_static(b"x")), "the queue is full");
        outbox.close(1013, "too slow");
        outbox.close(1011, "later closes do not replace the first");
        assert_eq!(outbox.recv().await, Out::Close(1013, "too slow"));
        assert!(
            outbox.push(&Bytes::from_static(b"y")),
            "a closed outbox forgets"
        );
        assert_eq!(outbox.recv().await, Out::Close(1013, "too slow"));
    }

    #[tokio::test]
    async fn a_detached_outbox_writes_nothing_more() {
        let (server, mut client) = connected_pair().await;
        let outbox = binary_outbox(&server);
        let waiting = park(&outbox).await;
        waiting.abort();
        let _ = waiting.await;
        outbox.detach();
        assert!(outbox.push(&Bytes::from_static(b"late")));
        crate::net::io::shutdown_write(&server).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after detach: {rest:?}");
    }
}
