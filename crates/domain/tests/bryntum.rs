//! The Bryntum dialect's domain functions against a real SQLite store on a temporary directory.
//! Two `Domain`s on one directory stand in for two nodes, or for one node before and after a
//! restart.

use chrono::TimeDelta;
use liveplan_domain::accounts::{NewUser, UserChanges};
use liveplan_domain::batch::{BatchOp, BatchRequest, BatchSetting};
use liveplan_domain::bryntum::access::{ProjectAccess, VisibleProject};
use liveplan_domain::bryntum::project_object_key;
use liveplan_domain::collections::{ASSIGNMENTS, CALENDARS, DEPENDENCIES, RESOURCES, TASKS};
use liveplan_domain::{Actor, CommitListener, Domain};
use proto::{ErrorCode, Event, EventType, Role, StreamKey};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use store::Page;
use store_sqlite::SqliteStore;
use uuid::Uuid;

/// Keeps what the listener was handed, to see that the echo reaches the bus.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl CommitListener for Recorder {
    fn committed(&self, events: &[Event]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
    }
}

async fn open(dir: &Path, listener: Arc<Recorder>) -> Domain {
    let store = SqliteStore::open_in_dir(dir).await.unwrap();
    Domain::new(Arc::new(store), listener)
}

fn id_of(value: &Value) -> Uuid {
    Uuid::parse_str(value["id"].as_str().unwrap()).unwrap()
}

async fn user(domain: &Domain, name: &str, is_admin: bool) -> Actor {
    let created = domain
        .create_user(
            None,
            NewUser {
                email: format!("{name}@example.test"),
                username: None,
                display_name: None,
                password_hash: "x".into(),
                is_admin,
            },
        )
        .await
        .unwrap();
    Actor {
        user_id: id_of(&created),
        is_admin,
        tab_id: None,
    }
}

async fn project(domain: &Domain, owner: &Actor, name: &str) -> Uuid {
    id_of(
        &domain
            .create_project(owner, &json!({ "name": name }))
            .await
            .unwrap(),
    )
}

/// A new user with `role` in the project; also returns the membership's id.
async fn member(domain: &Domain, owner: &Actor, project: Uuid, role: Role) -> (Actor, Uuid) {
    let actor = user(
        domain,
        &format!("{}-{}", role.name(), Uuid::now_v7()),
        false,
    )
    .await;
    let membership = domain
        .add_member(
            owner,
            project,
            &json!({ "user_id": actor.user_id, "role": role.level() }),
        )
        .await
        .unwrap();
    (actor, id_of(&membership))
}

struct World {
    dir: tempfile::TempDir,
    domain: Domain,
    listener: Arc<Recorder>,
    owner: Actor,
    project: Uuid,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let listener = Arc::new(Recorder::default());
    let domain = open(dir.path(), listener.clone()).await;
    let owner = user(&domain, "owner", true).await;
    let project = project(&domain, &owner, "Plan").await;
    World {
        dir,
        domain,
        listener,
        owner,
        project,
    }
}

fn create(collection: &'static liveplan_domain::collections::Collection, fields: Value) -> BatchOp {
    BatchOp::Create {
        collection,
        id: proto::ids::new_id(),
        fields,
    }
}

fn created_id(op: &BatchOp) -> Uuid {
    match op {
        BatchOp::Create { id, .. } | BatchOp::Update { id, .. } | BatchOp::Remove { id, .. } => *id,
    }
}

/// A small plan in every collection a demo snapshot holds; returns the ops' ids in order
/// (calendar, resource, parent, child, dependency, assignment).
async fn seed(w: &World) -> Vec<Uuid> {
    let calendar = create(
        &CALENDARS,
        json!({"name": "Cal", "working_days": [1, 2, 3]}),
    );
    let resource = create(&RESOURCES, json!({"name": "Ada"}));
    let parent = create(&TASKS, json!({"name": "Parent"}));
    let child = create(
        &TASKS,
        json!({"name": "Child", "parent_id": created_id(&parent), "calendar_id": created_id(&calendar)}),
    );
    let dependency = create(
        &DEPENDENCIES,
        json!({"predecessor_id": created_id(&parent), "successor_id": created_id(&child)}),
    );
    let assignment = create(
        &ASSIGNMENTS,
        json!({"task_id": created_id(&child), "resource_id": created_id(&resource)}),
    );
    let ops = vec![calendar, resource, parent, child, dependency, assignment];
    let ids = ops.iter().map(created_id).collect();
    w.domain
        .apply_batch(&w.owner, w.project, ops, None)
        .await
        .unwrap();
    ids
}

async fn latest_seq(domain: &Domain, project: Uuid) -> i64 {
    let mut ops = domain.store.read().await.unwrap();
    ops.latest_seq(StreamKey::Project(project)).await.unwrap()
}

async fn task_names(domain: &Domain, project: Uuid) -> Vec<String> {
    let mut ops = domain.store.read().await.unwrap();
    let mut names: Vec<String> = ops
        .list_records(project, "tasks", Page::ALL)
        .await
        .unwrap()
        .iter()
        .map(|r| r.body["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_dataset_holds_the_plan_the_project_object_and_its_seq() {
    let w = world().await;
    let ids = seed(&w).await;
    w.domain
        .apply_batch(
            &w.owner,
            w.project,
            Vec::new(),
            Some(BatchSetting {
                key: project_object_key(w.project),
                value: json!({"hoursPerDay": 6}).to_string(),
            }),
        )
        .await
        .unwrap();
    let (viewer, _) = member(&w.domain, &w.owner, w.project, Role::Viewer).await;
    let dataset = w.domain.bryntum_dataset(&viewer, w.project).await.unwrap();
    assert_eq!(dataset.role, Role::Viewer, "a Viewer reads");
    assert_eq!(dataset.project.name, "Plan");
    assert_eq!(
        dataset.project_object,
        *json!({"hoursPerDay": 6}).as_object().unwrap()
    );
    assert_eq!(dataset.seq, latest_seq(&w.domain, w.project).await);
    let names: Vec<&str> = dataset.records.iter().map(|(c, _)| c.name).collect();
    assert_eq!(
        names,
        [
            "calendars",
            "resources",
            "tasks",
            "dependencies",
            "assignments",
            "versions"
        ]
    );
    assert_eq!(dataset.records_of("tasks").len(), 2);
    assert_eq!(dataset.records_of("calendars")[0].id, ids[0]);
    assert_eq!(dataset.records_of("assignments")[0].id, ids[5]);
    assert!(dataset.records_of("versions").is_empty());
    assert!(dataset.records_of("risks").is_empty());

    let stranger = user(&w.domain, "stranger", false).await;
    let refused = w
        .domain
        .bryntum_dataset(&stranger, w.project)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound);
    assert!(
        w.domain
            .bryntum_project_object(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Datasets read while a writer commits: each one's tasks are exactly the tasks its seq says
/// (the creates and deletes in the log up to that seq), so the records and the seq are one
/// moment's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataset_and_its_seq_are_one_moment() {
    let w = world().await;
    let writer = {
        let (domain, owner, project) = (w.domain.clone(), w.owner.clone(), w.project);
        tokio::spawn(async move {
            for n in 0..80 {
                let task = create(&TASKS, json!({ "name": format!("t{n}") }));
                let id = created_id(&task);
                domain
                    .apply_batch(&owner, project, vec![task], None)
                    .await
                    .unwrap();
                if n % 3 == 0 {
                    domain
                        .apply_batch(
                            &owner,
                            project,
                            vec![BatchOp::Remove {
                                collection: &TASKS,
                                id,
                            }],
                            None,
                        )
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut checked = 0;
    for _ in 0..400 {
        let dataset = w.domain.bryntum_dataset(&w.owner, w.project).await.unwrap();
        let events = {
            let mut ops = w.domain.store.read().await.unwrap();
            ops.read_events(StreamKey::Project(w.project), 0, 10_000)
                .await
                .unwrap()
        };
        let mut alive = 0i64;
        for event in events.iter().filter(|e| e.seq <= Some(dataset.seq)) {
            match event.event_type {
                EventType::TaskCreated => alive += 1,
                EventType::TaskDeleted => alive -= 1,
                _ => {}
            }
        }
        assert_eq!(
            dataset.records_of("tasks").len() as i64,
            alive,
            "tasks as of seq {}",
            dataset.seq
        );
        checked += 1;
        if writer.is_finished() {
            break;
        }
    }
    writer.await.unwrap();
    assert!(checked > 0);
}

#[tokio::test]
async fn access_follows_membership_and_the_user() {
    let w = world().await;
    let (viewer, viewer_membership) = member(&w.domain, &w.owner, w.project, Role::Viewer).await;
    let (editor, _) = member(&w.domain, &w.owner, w.project, Role::Member).await;
    let viewer_access = w.domain.project_access(&viewer, w.project).await.unwrap();
    assert_eq!(viewer_access, ProjectAccess::Member(Role::Viewer));
    assert!(viewer_access.may_read() && !viewer_access.may_write());
    let editor_access = w.domain.project_access(&editor, w.project).await.unwrap();
    assert!(editor_access.may_read() && editor_access.may_write());
    assert_eq!(editor_access.role(), Some(Role::Member));

    w.domain
        .remove_member(&w.owner, w.project, viewer_membership, None)
        .await
        .unwrap();
    let lost = w.domain.project_access(&viewer, w.project).await.unwrap();
    assert_eq!(lost, ProjectAccess::Lost);
    assert!(!lost.may_read() && !lost.may_write());

    w.domain
        .update_user(
            &w.owner,
            editor.user_id,
            UserChanges {
                is_active: Some(false),
                ..UserChanges::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        w.domain.project_access(&editor, w.project).await.unwrap(),
        ProjectAccess::UserInactive
    );
    assert_eq!(
        w.domain
            .project_access(&w.owner, Uuid::now_v7())
            .await
            .unwrap(),
        ProjectAccess::Lost,
        "a project that does not exist"
    );
}

#[tokio::test]
async fn a_user_sees_their_projects_oldest_first_and_the_owner_acts_for_the_server() {
    let w = world().await;
    let second = project(&w.domain, &w.owner, "Second").await;
    let (viewer, _) = member(&w.domain, &w.owner, second, Role::Viewer).await;
    assert_eq!(
        w.domain.visible_projects(&w.owner).await.unwrap(),
        vec![
            VisibleProject {
                id: w.project,
                name: "Plan".into()
            },
            VisibleProject {
                id: second,
                name: "Second".into()
            },
        ]
    );
    let seen: Vec<Uuid> = w
        .domain
        .visible_projects(&viewer)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(seen, [second]);

    let owner = w.domain.project_owner(second).await.unwrap().unwrap();
    assert_eq!(owner.user_id, w.owner.user_id);
    w.domain
        .delete_project(&w.owner, second, None)
        .await
        .unwrap();
    assert!(w.domain.project_owner(second).await.unwrap().is_none());
}

#[tokio::test]
async fn a_viewer_changes_nothing_and_the_echo_rides_on_the_first_event() {
    let w = world().await;
    let (viewer, _) = member(&w.domain, &w.owner, w.project, Role::Viewer).await;
    let refused = w
        .domain
        .apply_batch_request(
            &viewer,
            w.project,
            BatchRequest {
                setting: Some(BatchSetting {
                    key: project_object_key(w.project),
                    value: "{}".into(),
                }),
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Forbidden);
    assert_eq!(refused.error.message, "viewers cannot change this project");
    assert!(
        w.domain
            .bryntum_project_object(w.project)
            .await
            .unwrap()
            .is_empty()
    );

    let before = latest_seq(&w.domain, w.project).await;
    let echo = json!({"localRevision": "local-1", "client": "client-3", "changes": {"tasks": {}}});
    let events = w
        .domain
        .apply_batch_request(
            &w.owner,
            w.project,
            BatchRequest {
                ops: vec![
                    create(&TASKS, json!({"name": "A"})),
                    create(&TASKS, json!({"name": "B"})),
                ],
                echo: Some(echo.clone()),
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].echo.as_ref(), Some(&echo));
    assert_eq!(events[1].echo, None);
    let logged = {
        let mut ops = w.domain.store.read().await.unwrap();
        ops.read_events(StreamKey::Project(w.project), before, 10)
            .await
            .unwrap()
    };
    assert_eq!(logged, events, "the log holds the echo with the event");
    let heard = w.listener.0.lock().unwrap().clone();
    assert_eq!(
        heard[heard.len() - 2..],
        events[..],
        "the listener gets it too"
    );

    // A batch that writes no row emits nothing, so nothing carries its echo.
    let quiet = w
        .domain
        .apply_batch_request(
            &w.owner,
            w.project,
            BatchRequest {
                setting: Some(BatchSetting {
                    key: project_object_key(w.project),
                    value: json!({"daysPerWeek": 4}).to_string(),
                }),
                echo: Some(echo),
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(quiet.is_empty());
}

#[tokio::test]
async fn a_phantom_sent_again_after_a_restart_is_still_known() {
    let w = world().await;
    let task = create(&TASKS, json!({"name": "From a phantom"}));
    let id = created_id(&task);
    w.domain
        .apply_batch_request(
            &w.owner,
            w.project,
            BatchRequest {
                ops: vec![task],
                phantoms: vec![("_generatedTaskModel_1".into(), id)],
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap();
    drop(w.domain);

    let domain = open(w.dir.path(), w.listener.clone()).await;
    let candidates = vec![
        "_generatedTaskModel_1".to_owned(),
        "_generatedTaskModel_2".to_owned(),
        "_generatedTaskModel_1".to_owned(),
    ];
    let known = domain.known_phantoms(w.project, &candidates).await.unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(known["_generatedTaskModel_1"], id);
    assert!(
        domain
            .known_phantoms(Uuid::now_v7(), &candidates)
            .await
            .unwrap()
            .is_empty(),
        "phantoms are per project"
    );

    // The resend as an update, with the mapping it used: accepted.
    domain
        .apply_batch_request(
            &w.owner,
            w.project,
            BatchRequest {
                ops: vec![BatchOp::Update {
                    collection: &TASKS,
                    id,
                    fields: json!({"name": "Renamed"}),
                }],
                phantoms: vec![("_generatedTaskModel_1".into(), id)],
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap();
    // A writer that had not seen the mapping gave the phantom a second id: refused whole.
    let duplicate = create(&TASKS, json!({"name": "Twice"}));
    let other = created_id(&duplicate);
    let refused = domain
        .apply_batch_request(
            &w.owner,
            w.project,
            BatchRequest {
                ops: vec![duplicate],
                phantoms: vec![("_generatedTaskModel_1".into(), other)],
                ..BatchRequest::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Conflict);
    assert_eq!(task_names(&domain, w.project).await, ["Renamed"]);
    assert_eq!(
        domain.known_phantoms(w.project, &candidates).await.unwrap()["_generatedTaskModel_1"],
        id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_autosave_per_project_per_minute_across_nodes() {
    let w = world().await;
    let other_node = open(w.dir.path(), Arc::new(Recorder::default())).await;
    let (editor, _) = member(&w.domain, &w.owner, w.project, Role::Member).await;
    let now = store::now();
    let asks: Vec<_> = (0..8)
        .map(|n| {
            let domain = if n % 2 == 0 {
                w.domain.clone()
            } else {
                other_node.clone()
            };
            let actor = if n % 3 == 0 {
                editor.clone()
            } else {
                w.owner.clone()
            };
            let project = w.project;
            tokio::spawn(async move { domain.grant_autosave(&actor, project, now).await })
        })
        .collect();
    let mut granted = 0;
    for ask in asks {
        if ask.await.unwrap().unwrap() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "exactly one of the concurrent requests");
    let later = |secs| now + TimeDelta::seconds(secs);
    assert!(
        !other_node
            .grant_autosave(&editor, w.project, later(59))
            .await
            .unwrap()
    );
    assert!(
        other_node
            .grant_autosave(&editor, w.project, later(60))
            .await
            .unwrap()
    );
    assert!(
        !w.domain
            .grant_autosave(&w.owner, w.project, later(61))
            .await
            .unwrap()
    );

    let second = project(&w.domain, &w.owner, "Second").await;
    assert!(
        w.domain
            .grant_autosave(&w.owner, second, later(61))
            .await
            .unwrap(),
        "each project has its own"
    );
    let (viewer, _) = member(&w.domain, &w.owner, w.project, Role::Viewer).await;
    assert!(
        !w.domain
            .grant_autosave(&viewer, w.project, later(500))
            .await
            .unwrap()
    );
    let stranger = user(&w.domain, "stranger", false).await;
    let refused = w
        .domain
        .grant_autosave(&stranger, w.project, later(500))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_demo_reset_puts_the_stored_snapshot_back_in_one_transaction() {
    let w = world().await;
    let ids = seed(&w).await;
    assert_eq!(w.domain.demo_drifted(w.project).await.unwrap(), None);
    let refused = w
        .domain
        .reset_demo(&w.owner, w.project, None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.error.message,
        "this project has no demo data to go back to"
    );

    assert!(w.domain.remember_demo_snapshot(w.project).await.unwrap());
    let snapshot = w.domain.bryntum_dataset(&w.owner, w.project).await.unwrap();
    // Restarted: the snapshot is still there, and the first one stays.
    drop(w.domain);
    let domain = open(w.dir.path(), w.listener.clone()).await;
    assert_eq!(domain.demo_drifted(w.project).await.unwrap(), Some(false));
    domain
        .apply_batch(
            &w.owner,
            w.project,
            vec![
                BatchOp::Update {
                    collection: &TASKS,
                    id: ids[2],
                    fields: json!({"name": "Drifted"}),
                },
                BatchOp::Remove {
                    collection: &RESOURCES,
                    id: ids[1],
                },
                create(&TASKS, json!({"name": "Extra"})),
            ],
            None,
        )
        .await
        .unwrap();
    assert!(!domain.remember_demo_snapshot(w.project).await.unwrap());
    assert_eq!(domain.demo_drifted(w.project).await.unwrap(), Some(true));

    let (viewer, _) = member(&domain, &w.owner, w.project, Role::Viewer).await;
    let refused = domain
        .reset_demo(&viewer, w.project, None)
        .await
        .unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Forbidden);
    assert_eq!(domain.demo_drifted(w.project).await.unwrap(), Some(true));

    let before = latest_seq(&domain, w.project).await;
    let echo = json!({"reset": {"userName": "owner"}});
    let events = domain
        .reset_demo(&w.owner, w.project, Some(echo.clone()))
        .await
        .unwrap();
    assert_eq!(events[0].echo.as_ref(), Some(&echo));
    assert!(events[1..].iter().all(|e| e.echo.is_none()));
    let seqs: Vec<i64> = events.iter().filter_map(|e| e.seq).collect();
    let expected: Vec<i64> = (before + 1..=before + events.len() as i64).collect();
    assert_eq!(seqs, expected, "one commit's events");
    assert_eq!(domain.demo_drifted(w.project).await.unwrap(), Some(false));
    let reset = domain.bryntum_dataset(&w.owner, w.project).await.unwrap();
    for collection in [
        "calendars",
        "resources",
        "tasks",
        "dependencies",
        "assignments",
    ] {
        let bodies = |rows: &[store::RecordRow]| -> Vec<(Uuid, Value)> {
            let mut keyed: Vec<(Uuid, Value)> = rows
                .iter()
                .map(|r| (r.id, Value::Object(r.body.clone())))
                .collect();
            keyed.sort_by_key(|(id, _)| *id);
            keyed
        };
        assert_eq!(
            bodies(reset.records_of(collection)),
            bodies(snapshot.records_of(collection)),
            "{collection} as they were"
        );
    }
}
