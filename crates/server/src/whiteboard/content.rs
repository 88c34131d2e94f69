//! What the server reads of a board's document (CONTRACT §11: the root maps `elements`,
//! `assets`, `meta`) and the change that brings a document back to a snapshot. Pure `yrs`: no
//! I/O, and every transaction here begins and ends inside one call.

use serde_json::{Map as JsonMap, Value};
use std::cmp::Ordering;
use yrs::types::ToJson;
use yrs::{
    Any, Array, ArrayPrelim, Doc, GetString, In, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector,
    TextPrelim, Transact, Update,
};

pub const ELEMENTS: &str = "elements";
pub const ASSETS: &str = "assets";
pub const META: &str = "meta";
const ROOTS: [&str; 3] = [ELEMENTS, ASSETS, META];

/// A document with the root maps declared (so roots that updates name are read as maps, as a
/// client's `doc.getMap` makes them).
pub fn new_doc() -> Doc {
    let doc = Doc::new();
    for root in ROOTS {
        doc.get_or_insert_map(root);
    }
    doc
}

/// Applies one stored update or state; `false` when it does not decode or apply.
pub fn apply(doc: &Doc, update: &[u8]) -> bool {
    let Some(update) = super::wire::decode_update(update) else {
        return false;
    };
    apply_decoded(doc, update)
}

/// Applies a decoded update in a transaction of its own; `false` when yrs refuses it (or
/// panics on it: the caller should then drop the document).
pub fn apply_decoded(doc: &Doc, update: Update) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.transact_mut().apply_update(update).is_ok()
    }))
    .unwrap_or(false)
}

/// The whole document as one update; `None` when yrs panics encoding it. A hostile update can
/// leave blocks pending (waiting for clocks that never come) whose merge overflows a clock
/// (found by the `yjs_message` fuzz target), so this runs under `catch_unwind` like the apply.
pub fn state(doc: &Doc) -> Option<Vec<u8>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }))
    .ok()
}

fn any_json(any: &Any) -> Value {
    serde_json::to_value(any).unwrap_or(Value::Null)
}

fn root_json<T: ReadTxn>(txn: &T, root: &str) -> JsonMap<String, Value> {
    let Some(map) = txn.get_map(root) else {
        return JsonMap::new();
    };
    map.iter(txn)
        .map(|(key, value)| (key.to_owned(), any_json(&value.to_json(txn))))
        .collect()
}

fn z_of(element: &Value) -> &str {
    element.get("z").and_then(Value::as_str).unwrap_or("")
}

/// `{elements:[…sorted by z, then id…], assets:{…}, meta:{…}}` (CONTRACT §11).
pub fn content_json(doc: &Doc) -> Value {
    let txn = doc.transact();
    let mut elements: Vec<Value> = root_json(&txn, ELEMENTS).into_values().collect();
    elements.sort_by(|a, b| match z_of(a).cmp(z_of(b)) {
        Ordering::Equal => {
            let id = |v: &Value| v.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
            id(a).cmp(&id(b))
        }
        other => other,
    });
    serde_json::json!({
        "elements": elements,
        "assets": root_json(&txn, ASSETS),
        "meta": root_json(&txn, META),
    })
}

/// A snapshot whose state does not decode or apply.
#[derive(Debug, PartialEq, Eq)]
pub struct BadSnapshot;

/// A value of another document as a preliminary value for this one (shared types become new
/// shared types of the same kind and content).
fn prelim<T: ReadTxn>(txn: &T, value: Out) -> In {
    match value {
        Out::Any(any) => In::Any(any),
        Out::YMap(map) => In::Map(
            map.iter(txn)
                .map(|(key, value)| (key.to_owned(), prelim(txn, value)))
                .collect::<MapPrelim>(),
        ),
        Out::YArray(array) => In::Array(
            array
                .iter(txn)
                .map(|value| prelim(txn, value))
                .collect::<ArrayPrelim>(),
        ),
        Out::YText(text) => In::from(TextPrelim::new(text.get_string(txn))),
        other => In::Any(other.to_json(txn)),
    }
}

/// Changes `live` (in one transaction) so that its root maps hold what `snapshot` (a whole
/// state) holds: keys the snapshot lacks are removed, keys whose value differs are replaced.
/// Returns the change as an update, `None` when nothing differed, or `Err` when the snapshot
/// does not decode.
pub fn restore(live: &Doc, snapshot: &[u8]) -> Result<Option<Vec<u8>>, BadSnapshot> {
    let target = new_doc();
    if !apply(&target, snapshot) {
        return Err(BadSnapshot);
    }
    let roots: Vec<MapRef> = ROOTS.iter().map(|r| live.get_or_insert_map(*r)).collect();
    let target_txn = target.transact();
    let mut txn = live.transact_mut();
    let mut changed = false;
    for (root, map) in ROOTS.iter().zip(&roots) {
        let wanted = target_txn.get_map(*root);
        let current: Vec<(String, Any)> = map
            .iter(&txn)
            .map(|(key, value)| (key.to_owned(), value.to_json(&txn)))
            .collect();
        for (key, _) in &current {
            let kept = wanted
                .as_ref()
                .is_some_and(|w| w.get(&target_txn, key).is_some());
            if !kept {
                map.remove(&mut txn, key);
                changed = true;
            }
        }
        let Some(wanted) = wanted else { continue };
        for (key, value) in wanted.iter(&target_txn) {
            let value_json = value.to_json(&target_txn);
            let same = current.iter().any(|(k, v)| k == key && *v == value_json);
            if !same {
                map.insert(&mut txn, key, prelim(&target_txn, value));
                changed = true;
            }
        }
    }
    let update = txn.encode_update_v1();
    drop(txn);
    Ok(changed.then_some(update))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{ArrayRef, Text, TextRef};

    fn element(doc: &Doc, id: &str, z: &str, text: &str) {
        let elements = doc.get_or_insert_map(ELEMENTS);
        let mut txn = doc.transact_mut();
        let el: MapRef = elements.insert(
            &mut txn,
            id,
            MapPrelim::from([("id", In::from(id)), ("z", In::from(z))]),
        );
        let points: ArrayRef = el.insert(&mut txn, "points", ArrayPrelim::default());
        points.push_back(&mut txn, 1.5);
        let t: TextRef = el.insert(&mut txn, "text", TextPrelim::new(""));
        t.push(&mut txn, text);
    }

    #[test]
    fn content_is_sorted_by_z_and_restore_brings_back_a_state() {
        let doc = new_doc();
        element(&doc, "b", "a1", "first");
        element(&doc, "a", "a0", "second");
        let content = content_json(&doc);
        assert_eq!(content["elements"][0]["id"], "a");
        assert_eq!(content["elements"][1]["text"], "first");
        assert_eq!(content["elements"][1]["points"][0], 1.5);
        let saved = state(&doc).unwrap();
        element(&doc, "c", "a2", "third");
        doc.get_or_insert_map(ELEMENTS)
            .remove(&mut doc.transact_mut(), "a");
        let change = restore(&doc, &saved).unwrap().unwrap();
        assert_eq!(content_json(&doc), content);
        // The change alone brings a copy of the edited document to the snapshot too.
        assert!(
            restore(&doc, &saved).unwrap().is_none(),
            "nothing left to change"
        );
        assert!(!change.is_empty());
        assert!(restore(&doc, &[0xff]).is_err());
    }
}
