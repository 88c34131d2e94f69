//! The publishers: R changes a second through the REST API, each stamped with its send time in
//! `X-Tab-Id` (and the task name), or as Bryntum `project_change` revisions from a few Bryntum
//! sockets, stamped in the task name, so every subscriber can compute its own delivery latency.

use crate::dialect::bryntum::{self, Bryntum};
use crate::dialect::{Kind, TAB_PREFIX, User};
use crate::stats::{new_histogram, now_ns};
use anyhow::{Context, bail};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub struct Plan {
    pub base: String,
    pub changes: Arc<Changes>,
    pub rate: u32,
    pub duration: Duration,
    pub max_in_flight: usize,
}

/// What one HTTP change is.
pub enum Changes {
    /// liveplan: rename a task, stamped in `X-Tab-Id` and the name.
    Tasks {
        token: String,
        project_id: String,
        task_ids: Vec<String>,
    },
    /// A Pusher-protocol server: trigger an event whose data is the stamp.
    Pusher(crate::dialect::pusher::App),
}

impl Changes {
    /// Change `i`, sent at `sent` (ns on the run's clock).
    fn request(&self, http: &reqwest::Client, base: &str, i: u64, sent: u64) -> RequestBuilder {
        let stamp = format!("{TAB_PREFIX}{sent}");
        match self {
            Changes::Tasks {
                token,
                project_id,
                task_ids,
            } => {
                let task_id = &task_ids[i as usize % task_ids.len()];
                http.patch(format!(
                    "{base}/api/v1/projects/{project_id}/tasks/{task_id}"
                ))
                .bearer_auth(token)
                .header("x-tab-id", stamp)
                // The name also carries the send time, for dialects without tab ids (Bryntum).
                .json(&json!({ "name": format!("lg {sent}") }))
            }
            Changes::Pusher(app) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let (path_and_query, body) = app.signed_event(&stamp, now);
                http.post(format!("{base}{path_and_query}"))
                    .header("content-type", "application/json")
                    .body(body)
            }
        }
    }
}

#[derive(Default)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    /// Ticks that found `max_in_flight` requests outstanding: the server could not keep up.
    pub skipped: u64,
    pub first_error: Option<String>,
    /// Send to answer of each successful change: the write path's own latency.
    pub rest: Option<Histogram<u64>>,
    pub elapsed: Duration,
}

/// Publishes `rate × duration` changes at even intervals (open loop: a slow answer does not
/// delay the next change, up to `max_in_flight` outstanding).
pub async fn publish(http: reqwest::Client, plan: Plan) -> Outcome {
    let started = tokio::time::Instant::now();
    let total = u64::from(plan.rate) * plan.duration.as_secs();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(plan.rate)));
    // If this process is starved for a moment, catch up so the average rate holds.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let slots = Arc::new(Semaphore::new(plan.max_in_flight));
    let rest = Arc::new(Mutex::new(new_histogram()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut requests = JoinSet::new();
    let mut outcome = Outcome::default();
    for i in 0..total {
        ticks.tick().await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            outcome.skipped += 1;
            continue;
        };
        let (rest, errors) = (rest.clone(), errors.clone());
        let (http, changes, base) = (http.clone(), plan.changes.clone(), plan.base.clone());
        requests.spawn(async move {
            let sent = now_ns();
            let answer = changes.request(&http, &base, i, sent).send().await;
            drop(slot);
            match answer {
                Ok(r) if r.status().is_success() => {
                    let took = now_ns() - sent;
                    rest.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .saturating_record(took.max(1));
                    true
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{status}: {text}"));
                    false
                }
                Err(e) => {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(e.to_string());
                    false
                }
            }
        });
        // Reap finished requests as we go so the set stays small.
        while let Some(done) = requests.try_join_next() {
            count(&mut outcome, done);
        }
    }
    while let Some(done) = requests.join_next().await {
        count(&mut outcome, done);
    }
    outcome.elapsed = started.elapsed();
    outcome.first_error = errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .cloned();
    outcome.rest = Some(
        Arc::try_unwrap(rest)
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_else(|shared| shared.lock().unwrap_or_else(|e| e.into_inner()).clone()),
    );
    outcome
}

fn count(outcome: &mut Outcome, done: Result<bool, tokio::task::JoinError>) {
    match done {
        Ok(true) => outcome.ok += 1,
        _ => outcome.failed += 1,
    }
}

/// What the Bryntum publishers' readers saw: their own revisions coming back (every socket of
/// the project gets each revision, the sender included, on both servers), and refusals.
#[derive(Default)]
struct Echoes {
    echoed: AtomicU64,
    refused: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Send to echo: the server's own turnaround, the counterpart of the REST round trip.
    round_trip: Mutex<Option<Histogram<u64>>>,
}

impl Echoes {
    fn note_error(&self, e: String) {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    }
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Bryntum sockets that send renames round robin. More than one because liveplan closes a
/// socket that sends over 50 messages a second.
pub struct BryntumPublishers {
    sinks: Vec<(Sink, Option<String>)>,
    project: Value,
    task_ids: Vec<Value>,
    echoes: Arc<Echoes>,
    readers: JoinSet<()>,
    next_revision: u64,
}

impl BryntumPublishers {
    /// Opens one socket per user, logs it in, loads the dataset (which subscribes it) and takes
    /// up to `tasks` task ids from the first dataset.
    pub async fn open(
        dialect: &Bryntum,
        users: &[User],
        source: IpAddr,
        tasks: usize,
    ) -> anyhow::Result<BryntumPublishers> {
        let echoes = Arc::new(Echoes::default());
        let mut readers = JoinSet::new();
        let mut sinks = Vec::with_capacity(users.len());
        let mut task_ids = Vec::new();
        for user in users {
            let mut socket = dialect
                .connect(user, source)
                .await
                .with_context(|| format!("publisher {}", user.id))?;
            let (client, dataset) = tokio::time::timeout(
                Duration::from_secs(120),
                bryntum::await_dataset(&mut socket),
            )
            .await
            .context("publisher: no dataset within 120 s")??;
            if task_ids.is_empty() {
                let dataset: Value =
                    serde_json::from_str(&dataset).context("publisher: the dataset is not JSON")?;
                task_ids = bryntum::task_ids(&dataset, tasks);
            }
            let (sink, stream) = socket.split();
            // Every socket of the project gets every revision: the first one alone counts them.
            readers.spawn(read_echoes(stream, echoes.clone(), sinks.is_empty()));
            sinks.push((sink, client));
        }
        if task_ids.is_empty() {
            bail!("the project's dataset has no task to rename");
        }
        Ok(BryntumPublishers {
            sinks,
            project: dialect.project.clone(),
            task_ids,
            echoes,
            readers,
            next_revision: 1,
        })
    }

    pub fn task_count(&self) -> usize {
        self.task_ids.len()
    }

    /// Sends `rate × duration` renames at even intervals (open loop, like the REST publisher:
    /// a tick finding `max_in_flight` revisions not yet echoed is skipped), then waits up to
    /// `wait` for the last echoes.
    pub async fn publish(
        &mut self,
        rate: u32,
        duration: Duration,
        max_in_flight: usize,
        wait: Duration,
    ) -> Outcome {
        let started = tokio::time::Instant::now();
        let total = u64::from(rate) * duration.as_secs();
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
        *self
            .echoes
            .round_trip
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(new_histogram());
        let answered =
            |e: &Echoes| e.echoed.load(Ordering::Relaxed) + e.refused.load(Ordering::Relaxed);
        let echoed_before = self.echoes.echoed.load(Ordering::Relaxed);
        let refused_before = self.echoes.refused.load(Ordering::Relaxed);
        let answered_before = answered(&self.echoes);
        let (mut sent, mut unsent, mut skipped) = (0u64, 0u64, 0u64);
        for i in 0..total {
            ticks.tick().await;
            let outstanding = sent.saturating_sub(answered(&self.echoes) - answered_before);
            if outstanding >= max_in_flight as u64 {
                skipped += 1;
                continue;
            }
            let task = &self.task_ids[i as usize % self.task_ids.len()];
            let socket = i as usize % self.sinks.len();
            let (sink, client) = &mut self.sinks[socket];
            let text = bryntum::rename_message(
                &self.project,
                client.as_deref(),
                self.next_revision,
                task,
                now_ns(),
            );
            self.next_revision += 1;
            match sink.send(Message::text(text)).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    unsent += 1;
                    self.echoes.note_error(format!("sending a revision: {e}"));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        while answered(&self.echoes) - answered_before < sent
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ok = self.echoes.echoed.load(Ordering::Relaxed) - echoed_before;
        let refused = self.echoes.refused.load(Ordering::Relaxed) - refused_before;
        Outcome {
            ok,
            // Sent but neither echoed nor refused in time counts as failed too.
            failed: unsent + sent.saturating_sub(ok),
            skipped,
            first_error: self
                .echoes
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .or_else(|| (refused > 0).then(|| format!("{refused} revision(s) refused"))),
            rest: self
                .echoes
                .round_trip
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
            elapsed: started.elapsed(),
        }
    }

    pub async fn close(mut self) {
        for (sink, _) in &mut self.sinks {
            let _ = sink.close().await;
        }
        self.readers.abort_all();
    }
}

/// Reads a publisher socket for its whole life: the server keeps sending it `users`, `join`
/// and every revision, and a socket nobody reads would back up into the server's buffers.
async fn read_echoes(
    mut stream: futures::stream::SplitStream<WebSocketStream<TcpStream>>,
    echoes: Arc<Echoes>,
    count_echoes: bool,
) {
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(f)) => {
                echoes.note_error(format!("publisher closed by the server: {f:?}"));
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                echoes.note_error(format!("publisher socket: {e}"));
                return;
            }
        };
        let text = text.as_str();
        if bryntum::is_refused_change(text) {
            // A refusal goes to the sender alone.
            echoes.refused.fetch_add(1, Ordering::Relaxed);
            echoes.note_error(format!("revision refused: {text}"));
            continue;
        }
        if !count_echoes {
            continue;
        }
        let delivery = bryntum::classify(text);
        if let (Kind::Event, Some(sent)) = (delivery.kind, delivery.sent_ns) {
            let took = now_ns().saturating_sub(sent);
            if let Some(h) = echoes
                .round_trip
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                h.saturating_record(took.max(1));
            }
            echoes.echoed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
