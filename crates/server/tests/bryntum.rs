//! The Bryntum Gantt protocol against a real server: phantoms, atomic revisions, other
//! transports' changes, and bad input.

use liveplan_testkit::TestServer;
use liveplan_testkit::bryntum::{Client, flatten_tasks, owned_project};
use serde_json::{Value, json};
use std::time::Duration;

/// A project owned by `alice` (Owner) with one task, and a logged-in Bryntum client on it.
async fn setup(server: &TestServer) -> (String, String, Client, Value) {
    let (_root, alice, project) = owned_project(server, "alice", "Bryntum", "Existing").await;
    let label = json!(project);
    let client = Client::on_dataset(server, "alice", label.clone()).await;
    (project, alice, client, label)
}

async fn list(server: &TestServer, token: &str, project: &str, collection: &str) -> Vec<Value> {
    let (_, body) = server
        .get(&format!("/api/v1/projects/{project}/{collection}"), token)
        .await;
    body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn phantoms_get_real_ids_and_every_reference_follows() {
    let server = TestServer::start().await;
    let (project, alice, mut client, label) = setup(&server).await;
    let changes = json!({
        "tasks": {
            "added": [
                {"$PhantomId": "_child1", "name": "Child 1", "parentId": "_parent", "$PhantomParentId": "_parent",
                 "startDate": "2026-03-02T00:00:00", "endDate": "2026-03-04T00:00:00", "duration": 16, "durationUnit": "hour", "cls": "x"},
                {"$PhantomId": "_parent", "name": "Parent", "parentId": null},
                {"$PhantomId": "_child2", "name": "Child 2", "parentId": "_parent"}
            ],
            "$input": {"added": [{"$PhantomId": "_child1", "parentId": "_parent"}]}
        },
        "dependencies": {"added": [{"$PhantomId": "_dep", "from": "_child1", "to": "_child2", "fromEvent": "_child1", "toEvent": "_child2", "type": 2, "lag": 1, "lagUnit": "week"}]},
        "resources": {"added": [{"$PhantomId": "_res", "name": "Robin", "favourite": "tea"}]},
        "assignments": {"added": [{"$PhantomId": "_as", "event": "_child2", "resource": "_res", "units": 50}]},
        "project": {"effort": 3}
    });
    let echo = client.change(&label, "local-1", changes).await;
    let real = |store: &str, i: usize| {
        echo["changes"][store]["added"][i]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (child1, parent, child2) = (real("tasks", 0), real("tasks", 1), real("tasks", 2));
    assert_eq!(
        echo["changes"]["tasks"]["added"][0]["parentId"],
        json!(parent)
    );
    assert_eq!(
        echo["changes"]["tasks"]["added"][0]["$PhantomParentId"],
        json!(parent)
    );
    assert_eq!(
        echo["changes"]["tasks"]["$input"]["added"][0]["parentId"],
        json!(parent)
    );
    assert_eq!(
        echo["changes"]["tasks"]["added"][0]["$PhantomId"],
        "_child1"
    );
    assert_eq!(
        echo["changes"]["dependencies"]["added"][0]["from"],
        json!(child1)
    );
    assert_eq!(
        echo["changes"]["dependencies"]["added"][0]["toEvent"],
        json!(child2)
    );
    assert_eq!(
        echo["changes"]["assignments"]["added"][0]["resource"],
        json!(real("resources", 0))
    );
    assert_eq!(echo["changes"]["project"], json!({"effort": 3}));
    assert_eq!(echo["client"], "client-1");

    let tasks = list(&server, &alice, &project, "tasks").await;
    assert_eq!(tasks.len(), 4);
    let task = |id: &str| tasks.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(task(&child1)["parent_id"], json!(parent));
    assert_eq!(task(&child2)["parent_id"], json!(parent));
    assert_eq!(
        task(&child1)["duration"],
        json!(2),
        "16 hours are 2 working days"
    );
    assert_eq!(task(&child1)["scheduled_start"], "2026-03-02T00:00:00");
    assert_eq!(task(&child1)["cls"], "x");
    let deps = list(&server, &alice, &project, "dependencies").await;
    assert_eq!(deps[0]["predecessor_id"], json!(child1));
    assert_eq!(deps[0]["lag"], json!(5), "a week of lag is 5 working days");
    let assignments = list(&server, &alice, &project, "assignments").await;
    assert_eq!(assignments[0]["task_id"], json!(child2));
    assert_eq!(assignments[0]["resource_id"], json!(real("resources", 0)));

    // The same phantom again (a resend): an update, not a second record.
    let again = json!({"tasks": {"added": [{"$PhantomId": "_parent", "name": "Parent renamed", "parentId": null}]}});
    let echo = client.change(&label, "local-2", again).await;
    assert_eq!(echo["changes"]["tasks"]["added"][0]["id"], json!(parent));
    let tasks = list(&server, &alice, &project, "tasks").await;
    assert_eq!(tasks.len(), 4);
    assert!(tasks.iter().any(|t| t["name"] == "Parent renamed"));

    // A dataset returns everything in Bryntum's names, units and unknown fields included.
    let dataset = client.dataset(label.clone()).await;
    let flat = flatten_tasks(&dataset["tasksData"]);
    let child = flat.iter().find(|t| t["id"] == child1.as_str()).unwrap();
    assert_eq!(child["duration"], 16);
    assert_eq!(child["durationUnit"], "hour");
    assert_eq!(child["cls"], "x");
    assert_eq!(child["startDate"], "2026-03-02T00:00:00");
    let tree_parent = dataset["tasksData"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == parent.as_str())
        .unwrap();
    assert_eq!(tree_parent["children"].as_array().unwrap().len(), 2);
    assert_eq!(dataset["dependenciesData"][0]["lag"], 1);
    assert_eq!(dataset["dependenciesData"][0]["lagUnit"], "week");
    assert_eq!(dataset["resourcesData"][0]["favourite"], "tea");
    assert_eq!(dataset["assignmentsData"][0]["units"], 50);
    assert_eq!(dataset["project"]["effort"], 3);
}

#[tokio::test]
async fn a_failing_revision_changes_nothing_and_resyncs() {
    let server = TestServer::start().await;
    let (project, alice, mut client, label) = setup(&server).await;
    let tasks = list(&server, &alice, &project, "tasks").await;
    let existing = tasks[0]["id"].as_str().unwrap().to_owned();
    let first = client
        .change(
            &label,
            "local-1",
            json!({"tasks": {"added": [{"$PhantomId": "_b", "name": "B"}]}}),
        )
        .await;
    let b = first["changes"]["tasks"]["added"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .change(&label, "local-2", json!({"dependencies": {"added": [{"$PhantomId": "_d1", "from": existing, "to": b, "type": 2}]}}))
        .await;
    let before = server.fingerprint().await;
    // A valid new task, a rename, and a link closing a cycle: all or nothing.
    client
        .send(json!({"command": "project_change", "data": {"project": label, "revisions": [{"revision": "local-3", "changes": {
            "tasks": {"added": [{"$PhantomId": "_c", "name": "C"}], "updated": [{"id": existing, "name": "Renamed"}]},
            "dependencies": {"added": [{"$PhantomId": "_d2", "from": b, "to": existing, "type": 2}]}
        }}]}}))
        .await;
    let error = client.recv().await;
    assert_eq!(error["command"], "project_change");
    assert!(
        error["error"].as_str().unwrap().contains("cycle"),
        "{error}"
    );
    let dataset = client.recv().await;
    assert_eq!(dataset["command"], "dataset");
    assert_eq!(
        flatten_tasks(&dataset["data"]["dataset"]["tasksData"]).len(),
        2
    );
    assert_eq!(
        server.fingerprint().await,
        before,
        "no row and no event was written"
    );
    // Nothing was echoed for the refused revision.
    assert!(client.quiet_for(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn other_transports_changes_reach_bryntum_as_revisions() {
    let server = TestServer::start().await;
    let (project, alice, mut client, label) = setup(&server).await;
    let created = server
        .create(&alice, &project, "tasks", json!({"name": "From REST", "duration": 2.5, "constraint_type": "mso", "early_start": "2026-01-01"}))
        .await;
    let message = client.recv_command("project_change").await;
    let revision = &message["data"]["revisions"][0];
    assert_eq!(revision["client"], Value::Null);
    assert!(
        revision["revision"]
            .as_str()
            .unwrap()
            .starts_with("server-")
    );
    let added = &revision["changes"]["tasks"]["added"][0];
    assert_eq!(added["id"], created["id"]);
    assert_eq!(added["name"], "From REST");
    assert_eq!(added["duration"], 2.5);
    assert_eq!(added["constraintType"], "muststarton");
    assert!(added.get("early_start").is_none() && added.get("version").is_none());
    assert_eq!(message["data"]["project"], label);
    let id = created["id"].as_str().unwrap();
    server
        .delete(&format!("/api/v1/projects/{project}/tasks/{id}"), &alice)
        .await;
    let message = client.recv_command("project_change").await;
    assert_eq!(
        message["data"]["revisions"][0]["changes"],
        json!({"tasks": {"removed": [{"id": id}]}})
    );
}

#[tokio::test]
async fn two_bryntum_clients_a_native_socket_and_sse_agree_with_the_store() {
    use futures::StreamExt;
    let server = TestServer::start().await;
    let (project, alice, mut a, label) = setup(&server).await;
    let mut b = Client::connect(&server.base).await;
    b.login("alice", "alice-password").await;
    b.dataset(label.clone()).await;

    let (_, ticket) = server.post("/api/v1/ws/ticket/", &alice, json!({})).await;
    let url = format!(
        "{}/ws/v1/projects/{project}/?ticket={}",
        server.base.replacen("http", "ws", 1),
        ticket["ticket"].as_str().unwrap()
    );
    let (mut native, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("native ws");
    let sse = server
        .http
        .get(format!("{}/api/v1/projects/{project}/events", server.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();
    // Let both live transports register before the edits.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let echo = a
        .change(
            &label,
            "local-1",
            json!({"tasks": {"added": [{"$PhantomId": "_x", "name": "X"}]}}),
        )
        .await;
    let x = echo["changes"]["tasks"]["added"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.change(
        &label,
        "b-1",
        json!({"tasks": {"updated": [{"id": x, "name": "X by B"}]}}),
    )
    .await;
    a.change(
        &label,
        "local-2",
        json!({"tasks": {"added": [{"$PhantomId": "_y", "name": "Y", "percentDone": 40}]}}),
    )
    .await;
    b.change(&label, "b-2", json!({"tasks": {"removed": [{"id": x}]}}))
        .await;

    // A REST change lands between the Bryntum ones.
    server
        .create(&alice, &project, "tasks", json!({"name": "Z"}))
        .await;
    a.change(&label, "local-3", json!({"tasks": {"updated": [{"id": x_of(&server, &alice, &project, "Z").await, "name": "Z by A"}]}}))
        .await;
    // Both Bryntum clients see the same revisions in the same order.
    while b.revisions.len() < a.revisions.len() {
        b.recv().await;
    }
    assert_eq!(a.revisions.len(), 6);
    assert_eq!(a.revisions, b.revisions);
    let mut seen = Vec::new();
    for client in [&mut a, &mut b] {
        let mut revisions = Vec::new();
        let fresh = client.dataset(label.clone()).await;
        // Revisions already consumed by `change` are echoes; count through the dataset instead.
        revisions.push(flatten_tasks(&fresh["tasksData"]));
        seen.push(revisions);
    }
    assert_eq!(seen[0], seen[1]);
    let store_tasks = list(&server, &alice, &project, "tasks").await;
    let names: Vec<&str> = seen[0][0]
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut store_names: Vec<&str> = store_tasks
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    store_names.sort();
    assert_eq!(sorted, store_names);
    assert_eq!(store_names, vec!["Existing", "Y", "Z by A"]);

    // The native socket and the SSE stream got every event of the log, in order.
    let (_, log) = server
        .get(
            &format!("/api/v1/projects/{project}/log?since=0&limit=1000"),
            &alice,
        )
        .await;
    let latest = log["latest_seq"].as_i64().unwrap();
    let mut native_seqs = Vec::new();
    while native_seqs.last().copied().unwrap_or(0) < latest {
        let frame = tokio::time::timeout(Duration::from_secs(10), native.next())
            .await
            .expect("native frame in time")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if let Some(seq) = value["seq"].as_i64() {
                native_seqs.push(seq);
            }
        }
    }
    let mut sse_seqs: Vec<i64> = Vec::new();
    let mut buffer = String::new();
    while sse_seqs.last().copied().unwrap_or(0) < latest {
        let chunk = tokio::time::timeout(Duration::from_secs(10), sse.next())
            .await
            .expect("sse data in time")
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    sse_seqs.push(id.trim().parse().unwrap());
                }
            }
        }
    }
    assert_eq!(native_seqs, sse_seqs);
    let first = native_seqs[0];
    assert_eq!(
        native_seqs,
        (first..=latest).collect::<Vec<_>>(),
        "gap-free"
    );
    // The native socket's last events carry the Bryntum revision's removal.
    let types: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap() >= first)
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "task_created",
            "task_updated",
            "task_created",
            "task_deleted",
            "task_created",
            "task_updated"
        ]
    );
}

async fn x_of(server: &TestServer, token: &str, project: &str, name: &str) -> String {
    list(server, token, project, "tasks")
        .await
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn bad_input_gets_plain_errors() {
    let server = TestServer::start().await;
    let (project, alice, mut client, label) = setup(&server).await;
    let root = server.admin().await;
    for (text, command, error) in [
        ("not json", "error", "the message is not valid JSON"),
        ("[1]", "error", "the message must be a JSON object"),
        (r#"{"data":{}}"#, "error", "the message needs a command"),
        (r#"{"command":"fly","data":{}}"#, "fly", "unknown command"),
        (
            r#"{"command":"dataset","data":[1]}"#,
            "dataset",
            "data must be an object",
        ),
        (
            r#"{"command":"dataset","data":{"project":"nope"}}"#,
            "dataset",
            "no such project",
        ),
        (
            r#"{"command":"dataset","data":{"project":99}}"#,
            "dataset",
            "no such project",
        ),
        (
            r#"{"command":"dataset","data":{}}"#,
            "dataset",
            "project is required",
        ),
        (
            r#"{"command":"reset","data":{"project":1}}"#,
            "reset",
            "reset is only available in demo mode",
        ),
        (
            r#"{"command":"loadVersionContent","data":{"project":1,"versionId":"x"}}"#,
            "loadVersionContent",
            "no such version",
        ),
    ] {
        client.send_text(text.to_owned()).await;
        let answer = client.recv().await;
        assert_eq!(
            answer,
            json!({"command": command, "error": error}),
            "{text}"
        );
    }
    // The numeric project id the demo server used: the n-th project of `projects`.
    client.send(json!({"command": "projects"})).await;
    let projects = client.recv_command("projects").await;
    assert_eq!(projects["data"]["projects"][0]["id"], json!(project));

    // Unknown ids and malformed records refuse the revision and resync.
    for changes in [
        json!({"tasks": {"updated": [{"id": "events-12", "name": "x"}]}}),
        json!({"tasks": {"updated": [{"id": uuid::Uuid::now_v7().to_string(), "name": "x"}]}}),
        json!({"tasks": {"added": [{"name": "no phantom id"}]}}),
        json!({"tasks": {"added": [{"$PhantomId": "_p", "name": "x", "parentId": "nowhere"}]}}),
        json!({"tasks": {"added": [{"$PhantomId": "_q", "name": "x", "constraintType": "sometime"}]}}),
        json!({"tasks": {"added": "nope"}}),
        json!({"dependencies": {"added": [{"$PhantomId": "_r", "from": "a", "to": "b"}]}}),
    ] {
        client
            .send(json!({"command": "project_change", "data": {"project": label, "revisions": [{"revision": "l", "changes": changes}]}}))
            .await;
        let error = client.recv().await;
        assert_eq!(error["command"], "project_change", "{changes}");
        assert!(error["error"].is_string(), "{error}");
        assert_eq!(client.recv().await["command"], "dataset");
    }
    assert_eq!(list(&server, &alice, &project, "tasks").await.len(), 1);

    // A project the socket has not loaded.
    let other = server.project(&root, "Other").await;
    client
        .send(json!({"command": "project_change", "data": {"project": other, "revisions": []}}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"command": "project_change", "error": "load the project's dataset first"})
    );

    // Before login, only login and version are answered.
    let mut anonymous = Client::connect(&server.base).await;
    anonymous.send(json!({"command": "projects"})).await;
    assert_eq!(
        anonymous.recv().await,
        json!({"command": "projects", "error": "log in first"})
    );
    anonymous
        .send(json!({"command": "login", "data": {"login": "alice", "password": "wrong"}}))
        .await;
    assert_eq!(
        anonymous.recv().await,
        json!({"command": "login", "error": "wrong login or password"})
    );

    // A Viewer may read but not change.
    let (viewer_id, _) = server.user(&root, "victor").await;
    server.add_member(&root, &project, &viewer_id, 1).await;
    let mut viewer = Client::connect(&server.base).await;
    viewer.login("victor", "victor-password").await;
    viewer.dataset(label.clone()).await;
    viewer
        .send(json!({"command": "project_change", "data": {"project": label, "revisions": [{"revision": "l", "changes": {"tasks": {"updated": []}}}]}}))
        .await;
    assert_eq!(
        viewer.recv().await,
        json!({"command": "project_change", "error": "viewers cannot change this project"})
    );
    assert_eq!(viewer.recv().await["command"], "dataset");

    // Oversized frames close with 1009, binary with 1003, floods with 1008.
    let mut big = Client::connect(&server.base).await;
    big.send_text(format!(
        r#"{{"command":"x","data":{{"p":"{}"}}}}"#,
        "a".repeat(1_100_000)
    ))
    .await;
    assert_eq!(big.close_code().await, Some(1009));
    let mut binary = Client::connect(&server.base).await;
    use futures::SinkExt;
    binary
        .ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    assert_eq!(binary.close_code().await, Some(1003));
    let mut flood = Client::connect(&server.base).await;
    for _ in 0..700 {
        if flood
            .ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                r#"{"command":"version"}"#,
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(flood.close_code().await, Some(1008));
}

#[tokio::test]
async fn versions_and_autosave() {
    let server = TestServer::start().await;
    let (_project, _alice, mut client, label) = setup(&server).await;
    let mut other = Client::connect(&server.base).await;
    other.login("alice", "alice-password").await;
    other.dataset(label.clone()).await;
    client
        .send(json!({"command": "requestVersionAutoSave", "data": {"project": label}}))
        .await;
    assert_eq!(
        client.recv_command("versionAutoSaveOK").await,
        json!({"command": "versionAutoSaveOK", "data": {"project": label}})
    );
    other
        .send(json!({"command": "request_version_autosave", "data": {"project": label}}))
        .await;
    assert!(
        other.quiet_for(Duration::from_millis(300)).await.is_none(),
        "one requester per interval"
    );
    let echo = client
        .change(&label, "local-1", json!({"versions": {"added": [{"$PhantomId": "_v", "name": "Before", "savedAt": "2026-03-02T10:00:00", "content": {"tasks": [1, 2]}}]}}))
        .await;
    let version = echo["changes"]["versions"]["added"][0]["id"].clone();
    client
        .send(json!({"command": "load_version_content", "data": {"project": label, "versionId": version}}))
        .await;
    assert_eq!(
        client.recv_command("loadVersionContent").await,
        json!({"command": "loadVersionContent", "data": {"project": label, "versionId": version, "content": {"tasks": [1, 2]}}})
    );
    let dataset = client.dataset(label.clone()).await;
    assert_eq!(dataset["versionsData"][0]["name"], "Before");
    assert!(dataset["versionsData"][0].get("content").is_none());
}

#[tokio::test]
async fn tickets_flat_messages_and_losing_access() {
    let server = TestServer::start().await;
    let (project, alice, mut client, label) = setup(&server).await;
    let root = server.admin().await;
    let (bea_id, bea) = server.user(&root, "bea").await;
    let membership = server.add_member(&root, &project, &bea_id, 100).await;

    // Login with a ticket, then the v1 flat form with camelCase names.
    let (_, ticket) = server.post("/api/v1/ws/ticket/", &bea, json!({})).await;
    let mut socket = Client::connect(&server.base).await;
    socket
        .send(json!({"command": "login", "ticket": ticket["ticket"]}))
        .await;
    let login = socket.recv_command("login").await;
    assert_eq!(login["data"]["userName"], "bea");
    let users = socket.recv_command("users").await;
    assert_eq!(users["data"]["users"], json!(["alice", "bea"]));
    assert_eq!(client.recv_command("join").await["data"]["userName"], "bea");
    socket
        .send(json!({"command": "dataset", "project": label}))
        .await;
    socket.recv_command("dataset").await;
    socket
        .send(json!({"command": "projectChange", "project": label, "revisions": [
            {"revision": "flat-1", "changes": {"tasks": {"added": [{"$PhantomId": "_f", "name": "Flat"}]}}}
        ]}))
        .await;
    let echo = socket.recv_command("project_change").await;
    assert_eq!(echo["data"]["revisions"][0]["localRevision"], "flat-1");
    // A spent ticket is refused.
    let mut again = Client::connect(&server.base).await;
    again
        .send(json!({"command": "login", "data": {"ticket": ticket["ticket"]}}))
        .await;
    assert_eq!(
        again.recv().await,
        json!({"command": "login", "error": "the ticket is unknown, expired or spent"})
    );

    // Removal from the project unsubscribes the socket.
    let (status, _) = server
        .delete(
            &format!("/api/v1/projects/{project}/members/{membership}"),
            &root,
        )
        .await;
    assert!(status.is_success());
    let lost = socket.recv_command("dataset").await;
    assert_eq!(lost["error"], "access to this project was revoked");
    // Logging the ticket's session out closes its socket.
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&bea),
            None,
        )
        .await;
    assert!(status.is_success());
    assert_eq!(socket.close_code().await, Some(4003));
    // Deactivating a user closes their sockets too.
    let (_, alice_row) = server.get("/api/v1/users/me", &alice).await;
    let alice_id = alice_row["id"].as_str().unwrap();
    server
        .patch(
            &format!("/api/v1/users/{alice_id}"),
            &root,
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(client.close_code().await, Some(4003));
}
