//! Polls a socket's read half only when it has something to say.
//!
//! A connection task waits in one `select!` on its hub subscription, its socket's read half and
//! its timers, and `select!` polls every branch each time the task wakes. Most wake-ups are
//! outgoing events, and polling the WebSocket's read half for each of them costs a buffer fill
//! and waker bookkeeping in the WebSocket library (12 % of server CPU in the profile of
//! BENCHMARKS.md). The gate hands the read half a waker of its own and polls it again only after
//! that waker fired (or after it last produced an item, since more may be buffered).

use futures::Stream;
use futures::task::AtomicWaker;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub struct ReadGate {
    signal: Arc<Signal>,
    waker: Waker,
}

impl Default for ReadGate {
    fn default() -> Self {
        let signal = Arc::new(Signal {
            // The first poll must reach the stream: nothing has registered a waker yet.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(signal.clone());
        Self { signal, waker }
    }
}

impl ReadGate {
    /// The stream's next item, polling the stream only when its waker fired since it last
    /// answered `Pending`. Cancel-safe when `S::poll_next` is.
    pub async fn next<S: Stream + Unpin>(&self, stream: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| self.poll_next(stream, cx)).await
    }

    fn poll_next<S: Stream + Unpin>(
        &self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<S::Item>> {
        self.signal.task.register(cx.waker());
        if !self.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut inner = Context::from_waker(&self.waker);
        match Pin::new(stream).poll_next(&mut inner) {
            Poll::Pending => Poll::Pending,
            ready => {
                // The stream may hold more already read; it will not wake anyone for that.
                self.signal.woken.store(true, Ordering::Release);
                ready
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadGate;
    use futures::SinkExt;

    #[tokio::test]
    async fn items_sent_before_and_after_a_wait_all_arrive() {
        let (mut tx, mut rx) = futures::channel::mpsc::channel::<u32>(4);
        let gate = ReadGate::default();
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        assert_eq!(gate.next(&mut rx).await, Some(1));
        assert_eq!(gate.next(&mut rx).await, Some(2));
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(3).await.unwrap();
        });
        assert_eq!(gate.next(&mut rx).await, Some(3));
        sender.await.unwrap();
        assert_eq!(gate.next(&mut rx).await, None);
    }
}
