//! Whether an export document holds together before an import writes any of it: the rules the
//! API applies one write at a time (field validation from the collection table, references
//! inside the project, a task tree without loops, dependencies without cycles, one membership
//! per user, an Owner per project, unique ids, emails, usernames and keys), applied to the
//! whole document at once, in memory.
//!
//! Every problem found is reported (up to [`MAX_PROBLEMS`]), each with where it is in the
//! document, the record's id and the field, so whoever wrote the document can fix it in one go.
//!
//! Two references are looser than the API's on purpose, because an export of a valid database
//! must import: a user reference (`assignee_id`, `owner_id`...) needs a user of the document,
//! not a member of the project (a member who leaves keeps their assignments), and read-only
//! author fields are not checked at all.

use crate::collections::{self, Collection};
use crate::records::check_body_size;
use crate::transfer::ExportDocument;
use crate::validate::{self, Mode};
use proto::{ApiError, ErrorCode, Role};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The most problems one refusal lists; the count says how many there were.
pub const MAX_PROBLEMS: usize = 50;

/// The most problems the refusal's message spells out (the details list them all).
const PROBLEMS_IN_MESSAGE: usize = 3;

/// One thing wrong with the document.
struct Problem {
    /// Where in the document: `users[2]`, `projects[0].records[14]`...
    at: String,
    collection: Option<String>,
    id: Option<Uuid>,
    field: String,
    reason: String,
    /// More about it (the tasks of a cycle).
    extra: Option<Value>,
}

#[derive(Default)]
struct Problems {
    listed: Vec<Problem>,
    total: usize,
}

impl Problems {
    fn add(
        &mut self,
        at: impl Into<String>,
        (collection, id): (Option<&str>, Option<Uuid>),
        field: &str,
        reason: impl Into<String>,
    ) {
        self.add_with(at, (collection, id), field, reason, None);
    }

    fn add_with(
        &mut self,
        at: impl Into<String>,
        (collection, id): (Option<&str>, Option<Uuid>),
        field: &str,
        reason: impl Into<String>,
        extra: Option<Value>,
    ) {
        self.total += 1;
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(Problem {
                at: at.into(),
                collection: collection.map(str::to_owned),
                id,
                field: field.to_owned(),
                reason: reason.into(),
                extra,
            });
        }
    }

    /// A validator's refusal as a problem: its field and reason when it names them.
    fn add_error(&mut self, at: &str, whose: (Option<&str>, Option<Uuid>), error: ApiError) {
        let details = error.details.as_ref();
        let field = details
            .and_then(|d| d.get("field"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let reason = details
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or(error.message);
        self.add(at, whose, &field, reason);
    }

    fn into_result(self) -> Result<(), ApiError> {
        let Some(first) = self.listed.first() else {
            return Ok(());
        };
        let spelled: Vec<String> = self
            .listed
            .iter()
            .take(PROBLEMS_IN_MESSAGE)
            .map(|p| {
                if p.field.is_empty() {
                    format!("{}: {}", p.at, p.reason)
                } else {
                    format!("{} {}: {}", p.at, p.field, p.reason)
                }
            })
            .collect();
        let more = self.total.saturating_sub(PROBLEMS_IN_MESSAGE);
        let message = format!(
            "the document was not imported ({} problem{}): {}{}",
            self.total,
            if self.total == 1 { "" } else { "s" },
            spelled.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
        let (field, reason) = (first.field.clone(), first.reason.clone());
        let problems: Vec<Value> = self
            .listed
            .into_iter()
            .map(|p| {
                let mut entry = json!({ "at": p.at, "field": p.field, "reason": p.reason });
                if let Some(collection) = p.collection {
                    entry["collection"] = json!(collection);
                }
                if let Some(id) = p.id {
                    entry["id"] = json!(id);
                }
                if let Some(extra) = p.extra {
                    entry["details"] = extra;
                }
                entry
            })
            .collect();
        Err(
            ApiError::new(ErrorCode::ValidationFailed, message).with_details(json!({
                "field": field,
                "reason": reason,
                "problems": problems,
                "problem_count": self.total,
                "truncated": self.total > MAX_PROBLEMS,
            })),
        )
    }
}

fn uuid_of(value: &Value, key: &str) -> Option<Uuid> {
    value
        .get(key)
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
}

/// Checks the whole document; `importer` is the administrator of an HTTP import, whose
/// account may be named by memberships without being in the document (it stays).
pub(crate) fn check_document(
    document: &ExportDocument,
    importer: Option<Uuid>,
    max_records_per_project: i64,
) -> Result<(), ApiError> {
    let mut problems = Problems::default();
    let users = check_users(document, &mut problems);
    let known_users: HashSet<Uuid> = users.into_iter().chain(importer).collect();
    // Every record of the document: (project index, collection), for references.
    let mut records: HashMap<Uuid, (usize, &str)> = HashMap::new();
    let mut project_ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut member_ids = HashSet::new();
    for (p, entry) in document.projects.iter().enumerate() {
        let at = format!("projects[{p}]");
        let id = uuid_of(&entry.project, "id");
        match id {
            None => problems.add(&at, (None, None), "id", "every project needs an id"),
            Some(id) if !project_ids.insert(id) => {
                problems.add(&at, (None, Some(id)), "id", "another project has this id")
            }
            Some(_) => {}
        }
        if let Err(e) = crate::projects::validate_project(&entry.project, true) {
            problems.add_error(&at, (None, id), e);
        }
        if let Some(key) = entry.project.get("key").and_then(Value::as_str)
            && !keys.insert(key.to_lowercase())
        {
            problems.add(&at, (None, id), "key", "another project has this key");
        }
        check_members(entry, &at, &known_users, &mut member_ids, &mut problems);
        if entry.records.len() as i64 > max_records_per_project {
            problems.add(
                &at,
                (None, id),
                "records",
                format!("a project holds at most {max_records_per_project} records"),
            );
        }
        for (r, record) in entry.records.iter().enumerate() {
            let Some(rid) = uuid_of(&record.record, "id") else {
                continue;
            };
            if records
                .insert(rid, (p, record.collection.as_str()))
                .is_some()
            {
                problems.add(
                    format!("{at}.records[{r}]"),
                    (Some(&record.collection), Some(rid)),
                    "id",
                    "another record of the document has this id",
                );
            }
        }
    }
    for (p, entry) in document.projects.iter().enumerate() {
        let project = ProjectScope {
            index: p,
            id: uuid_of(&entry.project, "id"),
            records: &records,
            users: &known_users,
        };
        let at = format!("projects[{p}]");
        if let Some(calendar) = entry.project.get("calendar_id").and_then(Value::as_str)
            && !Uuid::parse_str(calendar)
                .ok()
                .is_some_and(|c| project.holds(c, "calendars"))
        {
            problems.add(
                &at,
                (None, project.id),
                "calendar_id",
                "no calendar with this id in this project",
            );
        }
        check_records(entry, &at, &project, &mut problems);
    }
    problems.into_result()
}

/// Ids, emails and usernames: valid and each once (emails and usernames case-insensitively,
/// as sign-in reads them). Returns the users' ids.
fn check_users(document: &ExportDocument, problems: &mut Problems) -> Vec<Uuid> {
    let (mut ids, mut emails, mut usernames) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (i, user) in document.users.iter().enumerate() {
        let at = format!("users[{i}]");
        let whose = (None, Some(user.id));
        if !ids.insert(user.id) {
            problems.add(&at, whose, "id", "another user has this id");
        }
        if let Err(e) = crate::accounts::check_email(&user.email) {
            problems.add_error(&at, whose, e);
        } else if !emails.insert(user.email.to_lowercase()) {
            problems.add(&at, whose, "email", "another user has this email");
        }
        if let Some(name) = &user.username {
            if let Err(e) = crate::accounts::check_username(name) {
                problems.add_error(&at, whose, e);
            } else if !usernames.insert(name.to_lowercase()) {
                problems.add(&at, whose, "username", "another user has this username");
            }
        }
        if user.display_name.chars().count() > 200 {
            problems.add(&at, whose, "display_name", "must be 1 to 200 characters");
        }
        if user.password_hash.is_empty() {
            problems.add(&at, whose, "password_hash", "may not be empty");
        }
    }
    ids.into_iter().collect()
}

/// Memberships: a known user, a role, one per user, and at least one Owner.
fn check_members(
    entry: &crate::transfer::ExportProject,
    at: &str,
    users: &HashSet<Uuid>,
    member_ids: &mut HashSet<Uuid>,
    problems: &mut Problems,
) {
    let project = uuid_of(&entry.project, "id");
    let mut members = HashSet::new();
    let mut owners = 0;
    for (m, member) in entry.members.iter().enumerate() {
        let at = format!("{at}.members[{m}]");
        let whose = (None, Some(member.id));
        if !member_ids.insert(member.id) {
            problems.add(&at, whose, "id", "another membership has this id");
        }
        if !users.contains(&member.user_id) {
            problems.add(
                &at,
                whose,
                "user_id",
                format!("no user {} in the document", member.user_id),
            );
        }
        if !members.insert(member.user_id) {
            problems.add(
                &at,
                whose,
                "user_id",
                "this user already has a membership of this project",
            );
        }
        match Role::from_level(member.role) {
            None => problems.add(&at, whose, "role", "must be one of 1, 100, 200, 300, 400"),
            Some(Role::Owner) => owners += 1,
            Some(_) => {}
        }
    }
    if owners == 0 {
        problems.add(
            at,
            (None, project),
            "members",
            "a project needs at least one Owner (role 400)",
        );
    }
}

/// What the records of one project may refer to.
struct ProjectScope<'a> {
    index: usize,
    id: Option<Uuid>,
    records: &'a HashMap<Uuid, (usize, &'a str)>,
    users: &'a HashSet<Uuid>,
}

impl ProjectScope<'_> {
    fn holds(&self, id: Uuid, collection: &str) -> bool {
        self.records
            .get(&id)
            .is_some_and(|(p, c)| *p == self.index && *c == collection)
    }
}

/// The links of the project's tasks, gathered while its records are checked.
#[derive(Default)]
struct Graph {
    parents: HashMap<Uuid, (String, Uuid)>,
    /// predecessor -> successors
    successors: HashMap<Uuid, Vec<Uuid>>,
    /// (predecessor, successor) -> where the link is and its id
    links: HashMap<(Uuid, Uuid), (String, Uuid)>,
    assignments: HashSet<(Option<String>, Option<String>)>,
    active_sprints: usize,
}

fn check_records(
    entry: &crate::transfer::ExportProject,
    project_at: &str,
    project: &ProjectScope<'_>,
    problems: &mut Problems,
) {
    let mut graph = Graph::default();
    for (r, record) in entry.records.iter().enumerate() {
        let at = format!("{project_at}.records[{r}]");
        let Some(spec) = collections::by_name(&record.collection) else {
            problems.add(
                &at,
                (Some(&record.collection), None),
                "collection",
                format!("unknown collection {}", record.collection),
            );
            continue;
        };
        let id = uuid_of(&record.record, "id");
        let whose = (Some(spec.name), id);
        let Some(id) = id else {
            problems.add(&at, whose, "id", "every imported record needs an id");
            continue;
        };
        if let Some(owner) = record.record.get("project_id").filter(|v| !v.is_null())
            && project.id.is_some_and(|p| owner != &json!(p))
        {
            problems.add(&at, whose, "project_id", "names another project");
        }
        let body = match validate::validate_fields(spec, &record.record, Mode::Create) {
            Ok(body) => body,
            Err(e) => {
                problems.add_error(&at, whose, e);
                continue;
            }
        };
        if let Err(e) = check_body_size(spec, &body) {
            problems.add_error(&at, whose, e);
        }
        check_references(spec, id, &body, project, &at, problems);
        gather(spec, id, &body, &at, &mut graph, problems);
    }
    check_tree(&graph, problems);
    check_cycles(&graph, problems);
}

fn check_references(
    spec: &Collection,
    id: Uuid,
    body: &validate::JsonObject,
    project: &ProjectScope<'_>,
    at: &str,
    problems: &mut Problems,
) {
    let whose = (Some(spec.name), Some(id));
    for (field, target_id, target) in validate::references(spec, body) {
        match target {
            Some(_) if target_id == id => {
                problems.add(at, whose, field, "a record cannot refer to itself")
            }
            Some(target) if !project.holds(target_id, target) => problems.add(
                at,
                whose,
                field,
                format!("no {target} record with id {target_id} in this project"),
            ),
            None if !project.users.contains(&target_id) => problems.add(
                at,
                whose,
                field,
                format!("no user {target_id} in the document"),
            ),
            _ => {}
        }
    }
}

fn uuid_in(body: &validate::JsonObject, name: &str) -> Option<Uuid> {
    body.get(name)
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
}

/// The collection rules the API checks per record, and what the whole-project checks need.
fn gather(
    spec: &Collection,
    id: Uuid,
    body: &validate::JsonObject,
    at: &str,
    graph: &mut Graph,
    problems: &mut Problems,
) {
    let whose = (Some(spec.name), Some(id));
    match spec.name {
        "tasks" => {
            if body.get("is_milestone") == Some(&json!(true))
                && body
                    .get("duration")
                    .and_then(Value::as_f64)
                    .is_some_and(|d| d > 0.0)
            {
                problems.add(at, whose, "duration", "a milestone has duration 0");
            }
            if let Some(parent) = uuid_in(body, "parent_id") {
                graph.parents.insert(id, (at.to_owned(), parent));
            }
        }
        "dependencies" => {
            let (Some(from), Some(to)) = (
                uuid_in(body, "predecessor_id"),
                uuid_in(body, "successor_id"),
            ) else {
                return;
            };
            if from == to {
                problems.add(at, whose, "successor_id", "a task cannot depend on itself");
            } else if graph
                .links
                .insert((from, to), (at.to_owned(), id))
                .is_some()
            {
                problems.add(at, whose, "successor_id", "these tasks are already linked");
            } else {
                graph.successors.entry(from).or_default().push(to);
            }
        }
        "assignments" => {
            let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
            if !graph
                .assignments
                .insert((text("task_id"), text("resource_id")))
            {
                problems.add(
                    at,
                    whose,
                    "resource_id",
                    "this resource is already assigned to this task",
                );
            }
        }
        "sprints" => {
            let date = |name: &str| {
                body.get(name)
                    .and_then(Value::as_str)
                    .and_then(validate::parse_date)
            };
            if let (Some(start), Some(end)) = (date("start_date"), date("end_date"))
                && end < start
            {
                problems.add(at, whose, "end_date", "is before start_date");
            }
            if body.get("state") == Some(&json!("active")) {
                graph.active_sprints += 1;
                if graph.active_sprints == 2 {
                    problems.add(at, whose, "state", "another sprint is already active");
                }
            }
        }
        _ => {}
    }
}

/// Every task's way up ends at a root: no task is its own ancestor. Each task is walked once
/// (a walk stops at a task already known to reach a root), so a deep tree costs linear time.
fn check_tree(graph: &Graph, problems: &mut Problems) {
    #[derive(PartialEq)]
    enum Seen {
        OnWalk,
        Done,
    }
    let mut seen: HashMap<Uuid, Seen> = HashMap::new();
    let mut tasks: Vec<&Uuid> = graph.parents.keys().collect();
    tasks.sort();
    for &task in tasks {
        let mut walk = Vec::new();
        let mut cursor = task;
        loop {
            match seen.get(&cursor) {
                Some(Seen::Done) => break,
                Some(Seen::OnWalk) => {
                    // The walk came back to a task of its own: the tasks since then loop.
                    let start = walk.iter().position(|t| *t == cursor).unwrap_or(0);
                    if let Some((at, _)) = graph.parents.get(&cursor) {
                        problems.add_with(
                            at.as_str(),
                            (Some("tasks"), Some(cursor)),
                            "parent_id",
                            "the task tree has a loop: a task cannot be under itself",
                            Some(json!({ "loop": &walk[start..] })),
                        );
                    }
                    break;
                }
                None => {}
            }
            seen.insert(cursor, Seen::OnWalk);
            walk.push(cursor);
            match graph.parents.get(&cursor) {
                Some((_, parent)) => cursor = *parent,
                None => break,
            }
        }
        for t in walk {
            seen.insert(t, Seen::Done);
        }
    }
}

/// No dependency cycle. Kahn's sort leaves exactly the tasks on or behind a cycle, and each of
/// them keeps a predecessor among them: walking back along those must come round, in at most
/// as many steps as there are such tasks. That cycle is reported as the API reports one
/// (`cycle`, each task once, in link order).
fn check_cycles(graph: &Graph, problems: &mut Problems) {
    let mut incoming: HashMap<Uuid, usize> = HashMap::new();
    for (from, tos) in &graph.successors {
        incoming.entry(*from).or_default();
        for to in tos {
            *incoming.entry(*to).or_default() += 1;
        }
    }
    let mut ready: Vec<Uuid> = incoming
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| *t)
        .collect();
    while let Some(task) = ready.pop() {
        incoming.remove(&task);
        for to in graph.successors.get(&task).into_iter().flatten() {
            if let Some(n) = incoming.get_mut(to) {
                *n -= 1;
                if *n == 0 {
                    ready.push(*to);
                }
            }
        }
    }
    let mut predecessor: HashMap<Uuid, Uuid> = HashMap::new();
    let mut links: Vec<_> = graph
        .links
        .keys()
        .filter(|(from, to)| incoming.contains_key(from) && incoming.contains_key(to))
        .collect();
    links.sort();
    for (from, to) in links {
        predecessor.entry(*to).or_insert(*from);
    }
    let Some(mut cursor) = predecessor.keys().min().copied() else {
        return;
    };
    let mut walk: Vec<Uuid> = Vec::new();
    let mut on_walk: HashMap<Uuid, usize> = HashMap::new();
    for _ in 0..=predecessor.len() {
        if let Some(&start) = on_walk.get(&cursor) {
            // Walked backwards: reversed, the loop is in link order.
            let mut cycle: Vec<Uuid> = walk[start..].to_vec();
            cycle.reverse();
            let (first, second) = (cycle[0], cycle[1 % cycle.len()]);
            if let Some((at, id)) = graph.links.get(&(first, second)) {
                problems.add_with(
                    at.as_str(),
                    (Some("dependencies"), Some(*id)),
                    "successor_id",
                    format!(
                        "the dependencies form a cycle through {} tasks",
                        cycle.len()
                    ),
                    Some(json!({ "cycle": cycle })),
                );
            }
            return;
        }
        on_walk.insert(cursor, walk.len());
        walk.push(cursor);
        match predecessor.get(&cursor) {
            Some(previous) => cursor = *previous,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(graph: &mut Graph, from: Uuid, to: Uuid) {
        graph.successors.entry(from).or_default().push(to);
        graph
            .links
            .insert((from, to), (format!("{from}->{to}"), Uuid::now_v7()));
    }

    #[test]
    fn a_cycle_is_found_in_link_order_past_tasks_behind_it() {
        let [a, b, c, before, after] = [(); 5].map(|_| Uuid::now_v7());
        let mut graph = Graph::default();
        link(&mut graph, before, a);
        link(&mut graph, a, b);
        link(&mut graph, b, c);
        link(&mut graph, c, a);
        link(&mut graph, c, after);
        let mut problems = Problems::default();
        check_cycles(&graph, &mut problems);
        assert_eq!(problems.total, 1);
        let cycle: Vec<Uuid> =
            serde_json::from_value(problems.listed[0].extra.clone().unwrap()["cycle"].clone())
                .unwrap();
        assert_eq!(cycle.len(), 3);
        let start = cycle.iter().position(|t| *t == a).unwrap();
        let rotated: Vec<Uuid> = (0..3).map(|i| cycle[(start + i) % 3]).collect();
        assert_eq!(rotated, vec![a, b, c]);

        let mut acyclic = Graph::default();
        link(&mut acyclic, a, b);
        link(&mut acyclic, before, b);
        link(&mut acyclic, b, after);
        let mut problems = Problems::default();
        check_cycles(&acyclic, &mut problems);
        assert_eq!(problems.total, 0);
    }

    #[test]
    fn each_loop_of_the_task_tree_is_reported_once() {
        let [a, b, c, root] = [(); 4].map(|_| Uuid::now_v7());
        let mut graph = Graph::default();
        for (task, parent) in [(a, b), (b, a), (c, a), (root, root)] {
            graph.parents.insert(task, (format!("{task}"), parent));
        }
        let mut problems = Problems::default();
        check_tree(&graph, &mut problems);
        assert_eq!(problems.total, 2, "a-b and root-root, not c under them");
    }
}
