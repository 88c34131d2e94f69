//! The publisher: R changes a second through the REST API, each stamped with its send time in
//! `X-Tab-Id` so every subscriber can compute its own delivery latency.

use crate::dialect::TAB_PREFIX;
use crate::stats::{new_histogram, now_ns};
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

pub struct Plan {
    pub base: String,
    pub token: String,
    pub project_id: String,
    pub task_ids: Vec<String>,
    pub rate: u32,
    pub duration: Duration,
    pub max_in_flight: usize,
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
        let task_id = &plan.task_ids[i as usize % plan.task_ids.len()];
        let url = format!(
            "{}/api/v1/projects/{}/tasks/{task_id}",
            plan.base, plan.project_id
        );
        let request = http.patch(url).bearer_auth(&plan.token);
        let (rest, errors) = (rest.clone(), errors.clone());
        requests.spawn(async move {
            let sent = now_ns();
            let answer = request
                .header("x-tab-id", format!("{TAB_PREFIX}{sent}"))
                // The name also carries the send time, for dialects without tab ids (Bryntum).
                .json(&json!({ "name": format!("lg {sent}") }))
                .send()
                .await;
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
