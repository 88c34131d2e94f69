//! `writers`: committed changes per second through HTTP with N concurrent writers on P
//! projects (issue 15, "Performance"). Closed loop: each writer PATCHes a task of its own
//! (writer i on project i mod P) and sends its next change once the previous one is
//! acknowledged, so the figure is what the server commits, not what was offered.

use crate::args::{is_loopback, parse_base_url};
use crate::setup::{Api, expect_json};
use crate::stats::new_histogram;
use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const MAX_WRITERS: usize = 256;
pub const MAX_PROJECTS: usize = 256;
pub const MAX_SECONDS: u64 = 600;

#[derive(Args, Debug, Clone)]
pub struct WritersArgs {
    /// Base URL of the server; must be a loopback address.
    #[arg(long, env = "LIVEPLAN_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A system administrator: makes the projects and tasks and writes as their owner.
    #[arg(long, env = "LIVEPLAN_ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "LIVEPLAN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// Projects the writers are spread over (writer i writes to project i mod P).
    #[arg(long, default_value_t = 1)]
    pub projects: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of writing before the measurement starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
}

impl WritersArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.writers == 0 || self.writers > MAX_WRITERS {
            bail!("--writers must be 1..={MAX_WRITERS}");
        }
        if self.projects == 0 || self.projects > MAX_PROJECTS || self.projects > self.writers {
            bail!("--projects must be 1..={MAX_PROJECTS} and at most --writers");
        }
        if self.seconds == 0 || self.seconds > MAX_SECONDS || self.warmup > MAX_SECONDS {
            bail!("--seconds must be 1..={MAX_SECONDS} and --warmup at most {MAX_SECONDS}");
        }
        let (host, port) = parse_base_url(&self.server)?;
        let addrs: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !is_loopback(a.ip())) {
            bail!(
                "refusing {}: writers only targets loopback addresses",
                self.server
            );
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
pub struct WritersSummary {
    pub writers: usize,
    pub projects: usize,
    pub seconds: f64,
    pub changes: u64,
    pub changes_per_second: f64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// The 1-minute load average as the measurement ended (`/proc/loadavg`).
    pub load_average_1m: Option<f64>,
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn writers(a: WritersArgs) -> anyhow::Result<WritersSummary> {
    let base = a.server.trim_end_matches('/').to_owned();
    let api = Api::new(&base)?;
    let admin = Api::login(&api.http, &base, &a.admin_email, &a.admin_password).await?;
    // Writer i changes task i of project i mod P.
    let mut targets = Vec::with_capacity(a.writers);
    let mut projects = Vec::with_capacity(a.projects);
    for p in 0..a.projects {
        let project = api
            .post(
                &admin.token,
                "/projects",
                json!({ "name": format!("writers {} {p}", std::process::id()) }),
                "creating a project",
            )
            .await?;
        projects.push(project["id"].as_str().context("project id")?.to_owned());
    }
    for i in 0..a.writers {
        let project = &projects[i % a.projects];
        let task = api
            .post(
                &admin.token,
                &format!("/projects/{project}/tasks"),
                json!({ "name": format!("writer {i}"), "duration": 1 }),
                "creating a task",
            )
            .await?;
        let task = task["id"].as_str().context("task id")?;
        targets.push(format!("{base}/api/v1/projects/{project}/tasks/{task}"));
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let errors: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, url) in targets.into_iter().enumerate() {
        let (http, token) = (api.http.clone(), admin.token.clone());
        let (measuring, stop, failed, errors) = (
            measuring.clone(),
            stop.clone(),
            failed.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            let mut histogram = new_histogram();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = Instant::now();
                let answer = http
                    .patch(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "name": format!("writer {i} change {n}") }))
                    .send()
                    .await;
                let ok = match answer {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        true
                    }
                    Ok(r) => {
                        let what = expect_json(r, "a change").await.err();
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert_with(|| format!("{what:?}"));
                        false
                    }
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert_with(|| e.to_string());
                        false
                    }
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        let took = sent.elapsed().as_micros() as u64;
                        histogram.saturating_record(took.max(1));
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !ok {
                    // Do not spin on a failing server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            histogram
        });
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let load_average_1m = load_average();
    stop.store(true, Ordering::Relaxed);
    let mut all = new_histogram();
    while let Some(done) = tasks.join_next().await {
        all.add(done?).ok();
    }
    let changes = all.len();
    Ok(WritersSummary {
        writers: a.writers,
        projects: a.projects,
        seconds: elapsed.as_secs_f64(),
        changes,
        changes_per_second: changes as f64 / elapsed.as_secs_f64(),
        failed: failed.load(Ordering::Relaxed),
        first_error: errors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        latency_p50_us: all.value_at_quantile(0.5),
        latency_p99_us: all.value_at_quantile(0.99),
        load_average_1m,
    })
}
