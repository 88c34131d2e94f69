//! How many changes per second the write path commits on SQLite: one task created per
//! iteration, each its own transaction with its row, its reference index and its event,
//! on a real database file. Measured at the domain (no HTTP) and through HTTP on loopback.
//!
//! `cargo bench -p liveplan-server --bench write_path`

use domain::collections::TASKS;
use domain::{Actor, Domain};
use serde_json::json;
use std::sync::Arc;
use store::Store;

fn main() {
    divan::main();
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    domain: Domain,
    actor: Actor,
    project: uuid::Uuid,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (domain, actor, project) = runtime.block_on(async {
        let store: Arc<dyn Store> = liveplan_server::backends::open_store(None, dir.path())
            .await
            .unwrap();
        let domain = Domain::new(store, Arc::new(domain::NoListener));
        let user = domain
            .create_user(
                None,
                domain::accounts::NewUser {
                    email: "bench@example.test".into(),
                    username: None,
                    display_name: None,
                    password_hash: "x".into(),
                    is_admin: true,
                },
            )
            .await
            .unwrap();
        let actor = Actor {
            user_id: user["id"].as_str().unwrap().parse().unwrap(),
            is_admin: true,
            tab_id: None,
        };
        let project = domain
            .create_project(&actor, &json!({ "name": "bench" }))
            .await
            .unwrap();
        (
            domain,
            actor,
            project["id"].as_str().unwrap().parse().unwrap(),
        )
    });
    Fixture {
        runtime,
        domain,
        actor,
        project,
        _dir: dir,
    }
}

#[divan::bench(sample_count = 20, sample_size = 50)]
fn domain_create_task(bencher: divan::Bencher) {
    let f = fixture();
    let body =
        json!({ "name": "task", "duration": 3, "start_date": "2026-03-02", "extra": "kept" });
    bencher.bench_local(|| {
        f.runtime
            .block_on(f.domain.create_record(&f.actor, f.project, &TASKS, &body))
            .unwrap();
    });
}

#[divan::bench(sample_count = 20, sample_size = 50)]
fn domain_update_task(bencher: divan::Bencher) {
    let f = fixture();
    let task = f
        .runtime
        .block_on(
            f.domain
                .create_record(&f.actor, f.project, &TASKS, &json!({ "name": "t" })),
        )
        .unwrap();
    let id: uuid::Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        let body = json!({ "name": format!("t{n}") });
        f.runtime
            .block_on(
                f.domain
                    .update_record(&f.actor, f.project, &TASKS, id, &body, None),
            )
            .unwrap();
    });
}

#[divan::bench(sample_count = 20, sample_size = 50)]
fn http_create_task(bencher: divan::Bencher) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, client, token, url) = runtime.block_on(async {
        let mut config = liveplan_server::Config::new(dir.path().to_path_buf());
        config.admin_email = Some("bench@example.test".into());
        config.admin_password = Some("bench-password".into());
        let server = liveplan_server::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", server.address);
        let client = reqwest::Client::new();
        let login: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "email": "bench@example.test", "password": "bench-password" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().unwrap().to_owned();
        let project: serde_json::Value = client
            .post(format!("{base}/api/v1/projects"))
            .bearer_auth(&token)
            .json(&json!({ "name": "bench" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!(
            "{base}/api/v1/projects/{}/tasks",
            project["id"].as_str().unwrap()
        );
        (server, client, token, url)
    });
    let body = json!({ "name": "task", "duration": 3 });
    bencher.bench_local(|| {
        runtime.block_on(async {
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        });
    });
    runtime.block_on(server.shutdown()).unwrap();
}
