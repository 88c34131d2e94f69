//! The scheduler worker: after a commit that changes a project's schedule inputs, recompute
//! that project off the request path and write the results with their events.
//!
//! Bursts coalesce: a commit only marks its project dirty; the worker waits a short moment,
//! takes every dirty project, and computes each once with the inputs as they are then. A
//! project marked dirty while it is being computed is computed again afterwards, so the last
//! commit always gets a schedule that includes it.

use domain::schedule::{describe_error, is_schedule_input};
use domain::{CommitListener, Domain};
use proto::{Event, StreamKey};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// How long the worker lets a burst of commits gather before computing.
const COALESCE: Duration = Duration::from_millis(20);
/// A computation that takes longer is abandoned with `cpm_error`.
const COMPUTE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Dirty {
    projects: Mutex<BTreeSet<Uuid>>,
    wake: Notify,
}

/// The listener half: marks projects dirty. Cheap and never blocks a commit.
pub struct SchedulerListener {
    dirty: Arc<Dirty>,
}

/// The worker half, started once the domain exists.
pub struct SchedulerWorker {
    dirty: Arc<Dirty>,
}

pub fn channel() -> (Arc<SchedulerListener>, SchedulerWorker) {
    let dirty = Arc::new(Dirty::default());
    (
        Arc::new(SchedulerListener {
            dirty: dirty.clone(),
        }),
        SchedulerWorker { dirty },
    )
}

impl CommitListener for SchedulerListener {
    fn committed(&self, events: &[Event]) {
        let mut marked = false;
        for event in events.iter().filter(|e| is_schedule_input(e)) {
            let project = match event.stream {
                StreamKey::Project(id) => Some(id),
                _ => event.project_id,
            };
            if let Some(project) = project
                && let Ok(mut dirty) = self.dirty.projects.lock()
            {
                marked |= dirty.insert(project);
            }
        }
        if marked {
            self.dirty.wake.notify_one();
        }
    }
}

impl SchedulerWorker {
    pub fn spawn(self, domain: Domain) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.dirty.wake.notified().await;
                tokio::time::sleep(COALESCE).await;
                loop {
                    let next = self
                        .dirty
                        .projects
                        .lock()
                        .ok()
                        .and_then(|mut d| d.pop_first());
                    let Some(project) = next else { break };
                    recompute(&domain, project).await;
                }
            }
        })
    }
}

/// Computes one project's schedule and writes it, or writes `cpm_error`.
pub async fn recompute(domain: &Domain, project: Uuid) {
    let input = match domain.schedule_input(None, project).await {
        Ok(input) => input,
        // The project was deleted since it was marked: nothing to do.
        Err(_) => return,
    };
    let computed = tokio::time::timeout(
        COMPUTE_TIMEOUT,
        tokio::task::spawn_blocking(move || cpm::schedule(&input)),
    )
    .await;
    let outcome = match computed {
        Ok(Ok(Ok(schedule))) => domain.write_schedule(project, &schedule).await.map(|_| ()),
        Ok(Ok(Err(error))) => {
            let (message, details) = describe_error(&error);
            domain
                .write_schedule_error(project, &message, details)
                .await
        }
        Ok(Err(_)) => {
            domain
                .write_schedule_error(project, "the scheduler failed", serde_json::Value::Null)
                .await
        }
        Err(_) => {
            domain
                .write_schedule_error(
                    project,
                    "the schedule took too long to compute",
                    serde_json::Value::Null,
                )
                .await
        }
    };
    if let Err(error) = outcome {
        tracing::warn!(%project, error = %error.message, "could not write the schedule");
    }
}
