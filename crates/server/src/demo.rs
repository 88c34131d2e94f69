//! `--demo`: seeds, once, the demo users and two sample projects, through the same domain
//! commands a client would use, so the log holds their events like any other change.

use domain::accounts::NewUser;
use domain::collections::{ASSIGNMENTS, CALENDARS, DEPENDENCIES, RESOURCES, TASKS};
use domain::{Actor, Domain, OrApi};
use proto::ApiError;
use serde_json::{Value, json};
use uuid::Uuid;

const SEEDED: &str = "demo_seeded";

fn id_of(value: &Value) -> Result<Uuid, ApiError> {
    value["id"]
        .as_str()
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(ApiError::internal)
}

async fn demo_user(domain: &Domain, name: &str, is_admin: bool) -> Result<Uuid, ApiError> {
    if let Some(user) = domain.find_user_by_login(name).await? {
        return Ok(user.id);
    }
    let password_hash = crate::auth::password::hash(name.to_owned()).await?;
    let user = domain
        .create_user(
            None,
            NewUser {
                email: format!("{name}@demo.liveplan.invalid"),
                username: Some(name.to_owned()),
                display_name: Some(format!("{}{}", name[..1].to_uppercase(), &name[1..])),
                password_hash,
                is_admin,
            },
        )
        .await?;
    id_of(&user)
}

struct Plan<'a> {
    name: &'a str,
    key: &'a str,
    start: &'a str,
    holidays: &'a [(&'a str, &'a str)],
    /// (name, parent index, duration, start_date)
    tasks: &'a [(&'a str, Option<usize>, f64, Option<&'a str>)],
    /// (predecessor, successor, type, lag)
    links: &'a [(usize, usize, &'a str, f64)],
    resources: &'a [&'a str],
    /// (task, resource, units)
    assignments: &'a [(usize, usize, f64)],
}

const WEBSITE: Plan = Plan {
    name: "Website relaunch",
    key: "WEB",
    start: "2026-03-02",
    holidays: &[("2026-04-03", "2026-04-06")],
    tasks: &[
        ("Discovery", None, 0.0, None),
        ("Stakeholder interviews", Some(0), 5.0, Some("2026-03-02")),
        ("Content audit", Some(0), 4.0, None),
        ("Design", None, 0.0, None),
        ("Wireframes", Some(3), 6.0, None),
        ("Visual design", Some(3), 8.0, None),
        ("Build", None, 0.0, None),
        ("Front end", Some(6), 12.0, None),
        ("CMS integration", Some(6), 8.0, None),
        ("Launch", None, 0.0, None),
    ],
    links: &[
        (1, 2, "SS", 2.0),
        (2, 4, "FS", 0.0),
        (4, 5, "FS", 0.0),
        (5, 7, "FS", 0.0),
        (4, 8, "FS", 3.0),
        (7, 9, "FS", 0.0),
        (8, 9, "FS", 0.0),
    ],
    resources: &["Dana (design)", "Sam (engineering)", "Kim (content)"],
    assignments: &[
        (1, 2, 100.0),
        (2, 2, 50.0),
        (4, 0, 100.0),
        (5, 0, 100.0),
        (7, 1, 100.0),
        (8, 1, 50.0),
    ],
};

const OFFICE: Plan = Plan {
    name: "Office move",
    key: "MOVE",
    start: "2026-05-04",
    holidays: &[("2026-05-25", "2026-05-25")],
    tasks: &[
        ("Choose the new office", None, 10.0, Some("2026-05-04")),
        ("Sign the lease", None, 2.0, None),
        ("Plan the floor", None, 5.0, None),
        ("Order furniture", None, 3.0, None),
        ("Furniture delivery", None, 15.0, None),
        ("Move day", None, 1.0, None),
        ("Moved in", None, 0.0, None),
    ],
    links: &[
        (0, 1, "FS", 0.0),
        (1, 2, "FS", 0.0),
        (2, 3, "FS", 0.0),
        (3, 4, "FS", 0.0),
        (4, 5, "FS", 0.0),
        (1, 5, "FS", 10.0),
        (5, 6, "FS", 0.0),
    ],
    resources: &["Facilities team", "Movers"],
    assignments: &[(0, 0, 100.0), (2, 0, 50.0), (5, 1, 100.0)],
};

async fn seed_plan(
    domain: &Domain,
    owner: &Actor,
    plan: &Plan<'_>,
    members: &[(Uuid, i64)],
) -> Result<(), ApiError> {
    let project = domain
        .create_project(owner, &json!({ "name": plan.name, "key": plan.key, "start_date": plan.start, "status_date": plan.start }))
        .await?;
    let project = id_of(&project)?;
    for (user, role) in members {
        domain
            .add_member(owner, project, &json!({ "user_id": user, "role": role }))
            .await?;
    }
    let exceptions: Vec<Value> = plan
        .holidays
        .iter()
        .map(|(start, end)| json!({ "start": start, "end": end, "name": "Holiday" }))
        .collect();
    let calendar = domain
        .create_record(owner, project, &CALENDARS, &json!({ "name": "Standard", "working_days": [1, 2, 3, 4, 5], "exceptions": exceptions }))
        .await?;
    domain
        .update_project(
            owner,
            project,
            &json!({ "calendar_id": id_of(&calendar)? }),
            None,
        )
        .await?;
    let mut tasks = Vec::new();
    for (name, parent, duration, start) in plan.tasks {
        let mut body = json!({ "name": name, "duration": duration, "status": "todo" });
        if let Some(parent) = parent {
            body["parent_id"] = json!(tasks[*parent]);
        }
        if let Some(start) = start {
            body["start_date"] = json!(start);
        }
        if *duration == 0.0
            && parent.is_none()
            && plan.tasks.iter().all(|t| t.1 != Some(tasks.len()))
        {
            body["is_milestone"] = json!(true);
        }
        tasks.push(id_of(
            &domain.create_record(owner, project, &TASKS, &body).await?,
        )?);
    }
    for (from, to, kind, lag) in plan.links {
        domain
            .create_record(owner, project, &DEPENDENCIES, &json!({ "predecessor_id": tasks[*from], "successor_id": tasks[*to], "type": kind, "lag": lag }))
            .await?;
    }
    let mut resources = Vec::new();
    for name in plan.resources {
        resources.push(id_of(
            &domain
                .create_record(
                    owner,
                    project,
                    &RESOURCES,
                    &json!({ "name": name, "max_units": 100 }),
                )
                .await?,
        )?);
    }
    for (task, resource, units) in plan.assignments {
        domain
            .create_record(owner, project, &ASSIGNMENTS, &json!({ "task_id": tasks[*task], "resource_id": resources[*resource], "units": units }))
            .await?;
    }
    Ok(())
}

/// Seeds the demo data unless it was seeded before.
pub async fn seed(domain: &Domain) -> Result<(), ApiError> {
    if domain
        .store
        .read()
        .await
        .or_api()?
        .get_setting(SEEDED)
        .await
        .or_api()?
        .is_some()
    {
        return Ok(());
    }
    let admin = demo_user(domain, "admin", true).await?;
    let alex = demo_user(domain, "alex", false).await?;
    let ben = demo_user(domain, "ben", false).await?;
    let owner = Actor {
        user_id: admin,
        is_admin: true,
        tab_id: None,
    };
    seed_plan(domain, &owner, &WEBSITE, &[(alex, 300), (ben, 100)]).await?;
    seed_plan(domain, &owner, &OFFICE, &[(alex, 200), (ben, 1)]).await?;
    let mut tx = domain.store.write().await.or_api()?;
    tx.put_setting(SEEDED, "1").await.or_api()?;
    tx.commit().await.or_api()?;
    tracing::info!("seeded the demo users and projects");
    Ok(())
}
