//! The binary as an operator runs it: `serve` with flags and environment, the listening line,
//! `--demo`, `user create` beside a running server, and a clean exit on SIGTERM; on the store
//! `LIVEPLAN_TEST_DATABASE_URL` picks (liveplan-testkit's `backend`).

use liveplan_testkit::backend::Backend;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");

struct Served {
    child: Child,
    base: String,
}

/// The binary, on the test's store: its data directory and, on PostgreSQL, its database.
fn liveplan(backend: &Backend) -> Command {
    let mut command = Command::new(BIN);
    command.env("LIVEPLAN_DATA_DIR", backend.data_dir());
    match backend.database_url() {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command
}

fn serve(backend: &Backend, extra: &[&str], env: &[(&str, &str)]) -> Served {
    let mut command = liveplan(backend);
    command
        .arg("serve")
        .args(extra)
        .env("LIVEPLAN_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn liveplan");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("listening line");
    let base = line
        .trim()
        .strip_prefix("liveplan listening on ")
        .expect(&line)
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Served { child, base }
}

fn terminate(mut served: Served) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    served.child.wait().unwrap()
}

async fn login(http: &reqwest::Client, base: &str, login: &str, password: &str) -> (u16, Value) {
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": login, "password": password }))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn demo_server_user_create_and_sigterm() {
    let backend = Backend::from_env();
    let http = reqwest::Client::new();
    let served = serve(&backend, &["--demo"], &[]);
    assert_eq!(
        http.get(format!("{}/healthz", served.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for name in ["admin", "alex", "ben"] {
        let (status, body) = login(&http, &served.base, name, name).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (_, admin) = login(&http, &served.base, "admin", "admin").await;
    assert_eq!(admin["user"]["is_admin"], true);
    let token = admin["access_token"].as_str().unwrap().to_owned();
    let projects: Value = http
        .get(format!("{}/api/v1/projects", served.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(projects.as_array().unwrap().len() >= 2);
    for project in projects.as_array().unwrap() {
        for collection in [
            "tasks",
            "dependencies",
            "resources",
            "assignments",
            "calendars",
        ] {
            let rows: Value = http
                .get(format!(
                    "{}/api/v1/projects/{}/{collection}",
                    served.base,
                    project["id"].as_str().unwrap()
                ))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                !rows.as_array().unwrap().is_empty(),
                "{} has {collection}",
                project["name"]
            );
        }
        assert!(project["calendar_id"].is_string());
    }

    // An operator adds a user while the server runs, on the same data.
    let output = liveplan(&backend)
        .args([
            "user",
            "create",
            "--email",
            "ops@example.test",
            "--password",
            "ops-password",
            "--username",
            "ops",
            "--name",
            "Ops",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(created["display_name"], "Ops");
    let (status, _) = login(&http, &served.base, "ops", "ops-password").await;
    assert_eq!(status, 200);
    let output = liveplan(&backend)
        .args([
            "user",
            "create",
            "--email",
            "ops@example.test",
            "--password",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a duplicate email is refused");

    assert!(terminate(served).success(), "SIGTERM exits 0");

    // Seeding happens once: a second --demo start adds nothing.
    let served = serve(&backend, &["--demo"], &[]);
    let (_, admin) = login(&http, &served.base, "admin", "admin").await;
    let again: Value = http
        .get(format!("{}/api/v1/projects", served.base))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, projects);
    assert!(terminate(served).success());
}

#[tokio::test]
async fn bootstrap_admin_from_the_environment() {
    let backend = Backend::from_env();
    let http = reqwest::Client::new();
    let env = [
        ("LIVEPLAN_ADMIN_EMAIL", "boot@example.test"),
        ("LIVEPLAN_ADMIN_PASSWORD", "boot-password"),
    ];
    let served = serve(&backend, &[], &env);
    let response = http
        .post(format!("{}/api/v1/auth/login", served.base))
        .json(&json!({ "email": "boot@example.test", "password": "boot-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["is_admin"], true);
    assert!(terminate(served).success());
    // The store is where the test asked for it: the SQLite file, or none beside a PostgreSQL.
    assert_eq!(backend.sqlite_file().exists(), !backend.is_postgres());
}

/// The admin's view of the Pusher credentials on a served binary.
async fn pusher_credentials_of(served: &Served) -> Value {
    let http = reqwest::Client::new();
    let (status, body) = login(&http, &served.base, "boot@example.test", "boot-password").await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let response = http
        .get(format!("{}/api/v1/admin/pusher", served.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn pusher_credentials_from_flags_and_environment() {
    let admin = [
        ("LIVEPLAN_ADMIN_EMAIL", "boot@example.test"),
        ("LIVEPLAN_ADMIN_PASSWORD", "boot-password"),
    ];
    // Flags.
    let backend = Backend::from_env();
    let served = serve(
        &backend,
        &[
            "--pusher-app-id",
            "4242",
            "--pusher-key",
            "flag-key",
            "--pusher-secret",
            "flag-secret",
            "--pusher-webhook-url",
            "http://127.0.0.1:9/one",
            "--pusher-webhook-url",
            "http://127.0.0.1:9/two",
        ],
        &admin,
    );
    assert_eq!(
        pusher_credentials_of(&served).await,
        json!({"app_id": "4242", "key": "flag-key", "secret": "flag-secret"})
    );
    assert!(terminate(served).success());
    // The environment.
    let backend = Backend::from_env();
    let mut env = admin.to_vec();
    env.extend([
        ("LIVEPLAN_PUSHER_APP_ID", "77"),
        ("LIVEPLAN_PUSHER_KEY", "env-key"),
        ("LIVEPLAN_PUSHER_SECRET", "env-secret"),
        (
            "LIVEPLAN_PUSHER_WEBHOOK_URLS",
            "http://127.0.0.1:9/a,http://127.0.0.1:9/b",
        ),
    ]);
    let served = serve(&backend, &[], &env);
    assert_eq!(
        pusher_credentials_of(&served).await,
        json!({"app_id": "77", "key": "env-key", "secret": "env-secret"})
    );
    assert!(terminate(served).success());
    // Neither: generated, and the same after a restart on the same store.
    let backend = Backend::from_env();
    let served = serve(&backend, &[], &admin);
    let generated = pusher_credentials_of(&served).await;
    assert!(
        generated["secret"].as_str().unwrap().len() >= 64,
        "{generated}"
    );
    assert!(terminate(served).success());
    let served = serve(&backend, &[], &admin);
    assert_eq!(pusher_credentials_of(&served).await, generated);
    assert!(terminate(served).success());
}

#[test]
fn partial_pusher_credentials_are_refused_at_start() {
    for (args, env) in [
        (vec!["--pusher-app-id", "1", "--pusher-key", "k"], vec![]),
        (vec!["--pusher-secret", "s"], vec![]),
        (vec![], vec![("LIVEPLAN_PUSHER_KEY", "k")]),
        (
            vec!["--pusher-app-id", "1"],
            vec![("LIVEPLAN_PUSHER_SECRET", "s")],
        ),
    ] {
        let backend = Backend::from_env();
        let mut command = liveplan(&backend);
        command
            .arg("serve")
            .args(&args)
            .env("LIVEPLAN_LISTEN", "127.0.0.1:0");
        for (key, value) in &env {
            command.env(key, value);
        }
        let output = command.output().expect("liveplan runs");
        assert!(!output.status.success(), "{args:?} {env:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--pusher-app-id, --pusher-key and --pusher-secret together"),
            "{stderr}"
        );
        // The secret given is not echoed back.
        assert!(
            !stderr.contains("=s") && !stderr.contains(" s\n"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "it must not have listened");
    }
}
