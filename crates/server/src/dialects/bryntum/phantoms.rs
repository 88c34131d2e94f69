//! Phantom records: a Bryntum client creates records with temporary ids (`$PhantomId`) and
//! refers to them from other records of the same change (a child's `parentId`, a dependency's
//! `from`, an assignment's `event`, …) before the server has said what their real ids are.
//!
//! Resolution happens before anything is written: every phantom gets a real id (kept beside
//! its `$PhantomId`), and every string equal to a known phantom id is replaced by the real id,
//! wherever it sits in the change (`parentId`, `$PhantomParentId`, `from`/`to`, `event`/
//! `resource`, inside `$input`, inside arrays). Phantom ids are long random strings
//! (`_generatedTaskModel_<uuid>`), so a plain value match cannot hit anything else; the
//! `$PhantomId` values themselves are left as they are, since the client matches on them.
//!
//! A phantom the project has seen before (a client resending a change it got no answer to)
//! maps to the record made the first time, so it becomes an update, not a duplicate; the
//! domain stores each project's phantom ids with the change that made them, so this holds
//! across restarts and nodes.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The phantom ids a project gave real ids before (stored by the domain, per project,
/// `domain::bryntum::phantoms`), as far as one change mentions them.
#[derive(Debug, Default)]
pub struct PhantomMap {
    ids: HashMap<String, Uuid>,
}

impl From<HashMap<String, Uuid>> for PhantomMap {
    fn from(ids: HashMap<String, Uuid>) -> Self {
        Self { ids }
    }
}

impl PhantomMap {
    pub fn get(&self, phantom: &str) -> Option<Uuid> {
        self.ids.get(phantom).copied()
    }
}

/// The strings of a change that may be phantom ids a project saw before: `$PhantomId`s and
/// references to them. Bryntum's phantom ids start with `_` (`_generatedTaskModel_…`), so
/// only those are asked about, each once.
pub fn candidates(changes: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut HashSet<String>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::Object(object) => object.values().for_each(|v| walk(v, out, depth + 1)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, out, depth + 1)),
            Value::String(text) if text.starts_with('_') && text.len() <= MAX_PHANTOM_LEN => {
                out.insert(text.clone());
            }
            _ => {}
        }
    }
    let mut out = HashSet::new();
    walk(changes, &mut out, 0);
    out.into_iter().collect()
}

/// Longer strings are not taken for phantom ids (Bryntum's are about 60 characters).
const MAX_PHANTOM_LEN: usize = 200;

/// The phantoms of one change: their real ids, and which of them were seen before.
#[derive(Debug, Default)]
pub struct Resolution {
    pub ids: HashMap<String, Uuid>,
    pub repeated: Vec<String>,
}

/// Gives every `$PhantomId` in `changes` (each store's `added`, and `$input.added`) a real id,
/// reusing the id of a phantom `known` has seen, then rewrites every reference.
pub fn resolve(changes: &mut Value, known: &PhantomMap) -> Resolution {
    let mut resolution = Resolution::default();
    collect(changes, known, &mut resolution, 0);
    if !resolution.ids.is_empty() || !known.ids.is_empty() {
        rewrite(changes, &resolution.ids, known, 0);
    }
    resolution
}

/// Nesting deeper than this is not walked (the frame size limit keeps messages small anyway,
/// and the walk must not overflow the stack on a hostile message).
const MAX_DEPTH: usize = 64;

fn collect(value: &mut Value, known: &PhantomMap, out: &mut Resolution, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(object) => {
            if let Some(Value::String(phantom)) = object.get("$PhantomId") {
                let phantom = phantom.clone();
                let id = match (out.ids.get(&phantom), known.get(&phantom)) {
                    (Some(id), _) => *id,
                    (None, Some(id)) => {
                        out.repeated.push(phantom.clone());
                        id
                    }
                    (None, None) => proto::ids::new_id(),
                };
                out.ids.insert(phantom, id);
                object.insert("id".into(), Value::String(id.to_string()));
            }
            for child in object.values_mut() {
                collect(child, known, out, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, known, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn rewrite(value: &mut Value, ids: &HashMap<String, Uuid>, known: &PhantomMap, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "$PhantomId" {
                    continue;
                }
                rewrite(child, ids, known, depth + 1);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite(item, ids, known, depth + 1);
            }
        }
        Value::String(text) => {
            if let Some(id) = ids.get(text.as_str()).copied().or_else(|| known.get(text)) {
                *text = id.to_string();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_every_reference_to_a_phantom() {
        let mut changes = json!({
            "tasks": {
                "added": [
                    {"$PhantomId": "_p_parent", "name": "Parent", "parentId": "root"},
                    {"$PhantomId": "_p_child", "name": "Child", "parentId": "_p_parent", "$PhantomParentId": "_p_parent"}
                ],
                "$input": {"added": [{"$PhantomId": "_p_child", "parentId": "_p_parent"}]}
            },
            "resources": {"added": [{"$PhantomId": "_p_res", "name": "R"}]},
            "dependencies": {"added": [{"$PhantomId": "_p_dep", "from": "_p_parent", "to": "_p_child", "fromEvent": "_p_parent", "toEvent": "_p_child"}]},
            "assignments": {"added": [{"$PhantomId": "_p_as", "event": "_p_child", "resource": "_p_res", "list": ["_p_res"]}]}
        });
        let resolution = resolve(&mut changes, &PhantomMap::default());
        assert_eq!(resolution.ids.len(), 5);
        let id = |p: &str| resolution.ids[p].to_string();
        let child = &changes["tasks"]["added"][1];
        assert_eq!(child["id"], json!(id("_p_child")));
        assert_eq!(child["$PhantomId"], json!("_p_child"));
        assert_eq!(child["parentId"], json!(id("_p_parent")));
        assert_eq!(child["$PhantomParentId"], json!(id("_p_parent")));
        assert_eq!(changes["tasks"]["added"][0]["parentId"], json!("root"));
        let input = &changes["tasks"]["$input"]["added"][0];
        assert_eq!(input["id"], json!(id("_p_child")));
        assert_eq!(input["parentId"], json!(id("_p_parent")));
        let dep = &changes["dependencies"]["added"][0];
        for key in ["from", "fromEvent"] {
            assert_eq!(dep[key], json!(id("_p_parent")));
        }
        for key in ["to", "toEvent"] {
            assert_eq!(dep[key], json!(id("_p_child")));
        }
        let assignment = &changes["assignments"]["added"][0];
        assert_eq!(assignment["event"], json!(id("_p_child")));
        assert_eq!(assignment["resource"], json!(id("_p_res")));
        assert_eq!(assignment["list"][0], json!(id("_p_res")));
    }

    #[test]
    fn candidates_are_the_strings_that_may_be_phantoms() {
        let changes = json!({"tasks": {"added": [{"$PhantomId": "_a", "name": "Plain", "parentId": "_b"}],
            "updated": [{"id": "_a", "note": "x"}]}});
        let mut found = candidates(&changes);
        found.sort();
        assert_eq!(found, vec!["_a".to_owned(), "_b".to_owned()]);
    }

    #[test]
    fn a_repeated_phantom_keeps_its_id() {
        let mut first = json!({"tasks": {"added": [{"$PhantomId": "_p", "name": "A"}]}});
        let resolution = resolve(&mut first, &PhantomMap::default());
        let known = PhantomMap::from(resolution.ids.clone());
        let mut again = json!({
            "tasks": {"added": [{"$PhantomId": "_p", "name": "A2"}], "updated": [{"id": "_p", "name": "A3"}]}
        });
        let second = resolve(&mut again, &known);
        assert_eq!(second.repeated, vec!["_p".to_owned()]);
        assert_eq!(second.ids["_p"], resolution.ids["_p"]);
        assert_eq!(
            again["tasks"]["updated"][0]["id"],
            first["tasks"]["added"][0]["id"]
        );
    }

    #[test]
    fn hostile_nesting_does_not_overflow() {
        let mut value = json!("_p");
        for _ in 0..200 {
            value = json!([value]);
        }
        let mut changes = json!({"tasks": {"added": [{"$PhantomId": "_p"}], "x": value}});
        let resolution = resolve(&mut changes, &PhantomMap::default());
        assert_eq!(resolution.ids.len(), 1);
    }
}
