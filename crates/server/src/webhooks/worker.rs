//! The node's webhook worker: which webhooks are due, each one's lease, its cursor, and the
//! record of its deliveries. One task per webhook being sent on this node (at most
//! [`DUE_PAGE`]); the store's lease keeps other nodes off it meanwhile.

use super::attempt::{self, Request, Verdict};
use super::message;
use super::{ATTEMPTS, Wake, WebhookConfig};
use crate::metrics::{WebhookCounter, WebhookOutcome};
use domain::webhooks::wants;
use proto::{Event, StreamKey};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use store::{DELIVERIES_KEPT, Store, StoreResult, Timestamp, WebhookDeliveryRow, WebhookRow};
use tokio::sync::watch;
use uuid::Uuid;

/// Due webhooks read per look.
pub const DUE_PAGE: u32 = 100;
/// The least time from one look for due webhooks to the next one a commit wakes: what a
/// webhook's first delivery may wait at most under a stream of commits (a quiet node looks at
/// once). 50 ms: at 10 ms a node busy with whiteboards (1,000 boards, each announcing once a
/// second) spent about 3 % of its CPU looking for due webhooks, and a webhook is an HTTP call
/// whose receiver does not notice 50 ms.
const WAKE_GAP: std::time::Duration = std::time::Duration::from_millis(50);
/// Events read from the log per page.
const EVENTS_PAGE: u32 = 100;
/// Pages one turn sends at most before it gives the lease back (other webhooks and nodes get
/// their turn; the next look takes it again).
const PAGES_PER_TURN: usize = 10;

/// Everything one webhook's turn needs.
#[derive(Clone)]
struct Worker {
    store: Arc<dyn Store>,
    config: WebhookConfig,
    /// The lease owner: this node.
    node: Uuid,
    outcomes: WebhookCounter,
}

/// Starts the node's worker on the current runtime; it ends when `stop` says so.
pub fn spawn(
    store: Arc<dyn Store>,
    config: WebhookConfig,
    node: Uuid,
    wake: Arc<Wake>,
    outcomes: WebhookCounter,
    mut stop: watch::Receiver<bool>,
) {
    let worker = Worker {
        store,
        config,
        node,
        outcomes,
    };
    tokio::spawn(async move {
        let running: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
        // One warning per outage of the store, not one per look.
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            match worker.due().await {
                Ok(due) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("webhooks: the store answers again");
                    }
                    for webhook in due {
                        if !running.lock().expect("not poisoned").insert(webhook.id) {
                            continue;
                        }
                        let (worker, running, stop) =
                            (worker.clone(), running.clone(), stop.clone());
                        tokio::spawn(async move {
                            worker.turn(webhook.id, stop).await;
                            running.lock().expect("not poisoned").remove(&webhook.id);
                        });
                    }
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, "cannot look for due webhooks; trying again every poll");
                }
                Err(_) => {}
            }
            let looked = tokio::time::Instant::now();
            let woken = tokio::select! {
                _ = wake.rung() => true,
                _ = tokio::time::sleep(worker.config.poll) => false,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            if woken {
                // A look covers every commit made before it: under a stream of commits, wait
                // out the rest of WAKE_GAP so that one look serves those that came meanwhile,
                // instead of one look (a read of the store) per commit.
                tokio::select! {
                    _ = tokio::time::sleep_until(looked + WAKE_GAP) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
            }
        }
    });
}

/// What a turn ended on.
enum Ended {
    /// Caught up, or gave the lease back after its share of pages.
    Done,
    /// An event waits for its next attempt at this time.
    Retry(Timestamp),
    /// Another node holds the webhook now; nothing more to do here.
    LostLease,
}

fn later(by: std::time::Duration) -> Timestamp {
    store::now() + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}

impl Worker {
    async fn due(&self) -> StoreResult<Vec<WebhookRow>> {
        self.store
            .read()
            .await?
            .due_webhooks(store::now(), DUE_PAGE)
            .await
    }

    /// Takes (or renews) the lease; `false` when another node holds it.
    async fn lease(&self, id: Uuid) -> StoreResult<bool> {
        let mut tx = self.store.write().await?;
        let taken = tx
            .take_webhook_lease(id, self.node, store::now(), later(self.config.lease))
            .await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Sends what the webhook has due, holding its lease, then gives the lease back.
    async fn turn(&self, id: Uuid, stop: watch::Receiver<bool>) {
        match self.lease(id).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, webhook = %id, "cannot take a webhook's lease");
                return;
            }
        }
        let ended = self.send_due(id, &stop).await;
        let retry_at = match ended {
            Ok(Ended::Retry(at)) => Some(at),
            Ok(Ended::LostLease) => return,
            Ok(Ended::Done) => None,
            Err(err) => {
                tracing::warn!(error = %err, webhook = %id, "a webhook's turn met a store error");
                // Not before the next poll: the store may be away.
                Some(later(self.config.poll))
            }
        };
        let released = async {
            let mut tx = self.store.write().await?;
            tx.release_webhook_lease(id, self.node, retry_at).await?;
            tx.commit().await
        };
        if let Err(err) = released.await {
            // The lease expires on its own.
            tracing::warn!(error = %err, webhook = %id, "cannot give a webhook's lease back");
        }
    }

    async fn send_due(&self, id: Uuid, stop: &watch::Receiver<bool>) -> StoreResult<Ended> {
        for _ in 0..PAGES_PER_TURN {
            if *stop.borrow() {
                return Ok(Ended::Done);
            }
            let mut ops = self.store.read().await?;
            let Some(webhook) = ops.get_webhook(id).await?.filter(|w| w.active) else {
                return Ok(Ended::Done);
            };
            let stream = StreamKey::Project(webhook.project_id);
            let events = ops.read_events(stream, webhook.cursor, EVENTS_PAGE).await?;
            let Some(first_seq) = events.first().and_then(|e| e.seq) else {
                return Ok(Ended::Done);
            };
            let oldest = ops.oldest_seq(stream).await?;
            drop(ops);
            let mut cursor = webhook.cursor;
            if first_seq > cursor + 1 && oldest == Some(first_seq) {
                // Retention's count limit pruned events this webhook had not handled.
                match self.skip_gap(&webhook, first_seq).await? {
                    Some(moved) => cursor = moved,
                    None => return Ok(Ended::LostLease),
                }
            }
            // Events the filter passes over move the cursor in one step, before the next
            // event sent (or at the end of the page).
            let mut passed = cursor;
            for event in &events {
                let Some(seq) = event.seq else { continue };
                if !wants(&webhook.events, event.event_type) {
                    passed = seq;
                    continue;
                }
                if *stop.borrow() {
                    // A stopping node gives the lease back (in `turn`) rather than leave the
                    // webhook to wait for it to expire.
                    break;
                }
                if passed > cursor {
                    if !self.advance(id, cursor, passed).await? {
                        return Ok(Ended::LostLease);
                    }
                    cursor = passed;
                }
                match self.deliver(&webhook, cursor, event, seq).await? {
                    Step::Handled => {
                        cursor = seq;
                        passed = seq;
                    }
                    Step::Wait(at) => return Ok(Ended::Retry(at)),
                    Step::LostLease => return Ok(Ended::LostLease),
                }
            }
            if passed > cursor && !self.advance(id, cursor, passed).await? {
                return Ok(Ended::LostLease);
            }
            if events.len() < EVENTS_PAGE as usize {
                return Ok(Ended::Done);
            }
        }
        Ok(Ended::Done)
    }

    async fn advance(&self, id: Uuid, from: i64, to: i64) -> StoreResult<bool> {
        let mut tx = self.store.write().await?;
        let moved = tx.advance_webhook_cursor(id, self.node, from, to).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Records the pruned seqs after the cursor as one `skipped` delivery (at the first of
    /// them) and moves the cursor past them. Returns the new cursor, `None` on a lost lease.
    async fn skip_gap(&self, webhook: &WebhookRow, first_kept: i64) -> StoreResult<Option<i64>> {
        let (from, to) = (webhook.cursor, first_kept - 1);
        let at = store::now();
        let mut tx = self.store.write().await?;
        if tx
            .get_webhook_delivery(webhook.id, from + 1)
            .await?
            .is_none()
        {
            tx.insert_webhook_delivery(&WebhookDeliveryRow {
                id: Uuid::now_v7(),
                webhook_id: webhook.id,
                seq: from + 1,
                event: String::new(),
                outcome: "skipped".into(),
                attempts: 0,
                response_status: None,
                error: Some(format!(
                    "seqs {} to {to} left the log (retention) before they were sent",
                    from + 1
                )),
                created_at: at,
                updated_at: at,
            })
            .await?;
        }
        if !tx
            .advance_webhook_cursor(webhook.id, self.node, from, to)
            .await?
        {
            return Ok(None);
        }
        tx.commit().await?;
        self.outcomes.record(WebhookOutcome::Skipped);
        tracing::warn!(webhook = %webhook.id, from = from + 1, to, "webhook events were pruned before delivery");
        Ok(Some(to))
    }

    /// The delivery of `seq`, made (and its id stored) before its first attempt.
    async fn delivery(
        &self,
        webhook: &WebhookRow,
        event: &Event,
        seq: i64,
    ) -> StoreResult<WebhookDeliveryRow> {
        let mut tx = self.store.write().await?;
        if let Some(existing) = tx.get_webhook_delivery(webhook.id, seq).await? {
            return Ok(existing);
        }
        let at = store::now();
        let row = WebhookDeliveryRow {
            id: Uuid::now_v7(),
            webhook_id: webhook.id,
            seq,
            event: event.event_type.dotted().to_owned(),
            outcome: "pending".into(),
            attempts: 0,
            response_status: None,
            error: None,
            created_at: at,
            updated_at: at,
        };
        tx.insert_webhook_delivery(&row).await?;
        tx.prune_webhook_deliveries(webhook.id, DELIVERIES_KEPT)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// One attempt at `event` (the cursor at `cursor`, just before it), recorded; with its final
    /// outcome, the cursor moves past it in the same transaction.
    async fn deliver(
        &self,
        webhook: &WebhookRow,
        cursor: i64,
        event: &Event,
        seq: i64,
    ) -> StoreResult<Step> {
        let mut delivery = self.delivery(webhook, event, seq).await?;
        if delivery.outcome != "pending" {
            // Decided before a crash that came before the cursor moved.
            let mut tx = self.store.write().await?;
            if !tx
                .advance_webhook_cursor(webhook.id, self.node, cursor, seq)
                .await?
            {
                return Ok(Step::LostLease);
            }
            tx.commit().await?;
            return Ok(Step::Handled);
        }
        // The lease must outlast this attempt.
        if !self.lease(webhook.id).await? {
            return Ok(Step::LostLease);
        }
        let body = message::body(delivery.id, webhook.project_id, event);
        let signature = message::signature(&webhook.secret, chrono::Utc::now().timestamp(), &body);
        let outcome = attempt::send(
            Request {
                url: &webhook.url,
                event: event.event_type.dotted(),
                delivery_id: delivery.id.to_string(),
                signature,
                body,
            },
            &self.config,
        )
        .await;
        delivery.attempts += 1;
        delivery.response_status = outcome.status.map(i32::from);
        delivery.error = outcome.error.clone();
        delivery.updated_at = store::now();
        let (label, metric) = match outcome.verdict {
            Verdict::Delivered => ("delivered", WebhookOutcome::Delivered),
            Verdict::Refused => ("refused", WebhookOutcome::Refused),
            Verdict::Failed if delivery.attempts >= ATTEMPTS => ("gave_up", WebhookOutcome::GaveUp),
            Verdict::Failed => ("pending", WebhookOutcome::Retried),
        };
        delivery.outcome = label.into();
        let mut tx = self.store.write().await?;
        tx.update_webhook_delivery(&delivery).await?;
        let final_outcome = label != "pending";
        if final_outcome
            && !tx
                .advance_webhook_cursor(webhook.id, self.node, cursor, seq)
                .await?
        {
            return Ok(Step::LostLease);
        }
        tx.commit().await?;
        self.outcomes.record(metric);
        if final_outcome {
            if label != "delivered" {
                tracing::info!(webhook = %webhook.id, seq, outcome = label, status = ?outcome.status, "a webhook delivery ended unsent");
            }
            Ok(Step::Handled)
        } else {
            Ok(Step::Wait(later(
                self.config.retry_after(delivery.attempts),
            )))
        }
    }
}

/// What one event came to in a turn.
enum Step {
    /// Final: the cursor is past it.
    Handled,
    /// Its next attempt is due then.
    Wait(Timestamp),
    LostLease,
}
