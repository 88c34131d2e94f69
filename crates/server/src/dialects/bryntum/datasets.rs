//! The last `dataset` this node encoded for each project, so the sockets that load a project
//! one after another (a team opening the plan, thousands of subscribers at once) share one
//! encoding instead of each reading every record and building it again. Besides the work, the
//! tens of kilobytes of short-lived values each build makes land between the few small
//! allocations every socket keeps, and the allocator keeps the pages they pin.
//!
//! A kept encoding is sent only for a read that finds the same seq, project row and `project`
//! object (`Domain::bryntum_dataset_head`, which also checks the reader's access), and only for
//! [`FRESH_FOR`] after it was made: an import may replace records without moving the seq (seqs
//! never go back), and a socket that must start again from the store (a resync) never uses one.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use store::{JsonObject, ProjectRow};
use uuid::Uuid;

/// How long an encoding may be sent after it was made.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Projects whose last encoding the node keeps.
const KEPT: usize = 1024;

/// What a dataset was made from, and its encoding.
struct Encoded {
    seq: i64,
    project: ProjectRow,
    object: JsonObject,
    made: Instant,
    body: Bytes,
}

/// See the module doc.
#[derive(Default)]
pub struct Datasets {
    kept: Mutex<HashMap<Uuid, Encoded>>,
}

impl Datasets {
    /// The kept encoding of the project, if it was made from this seq, project row and object
    /// less than [`FRESH_FOR`] before `now`.
    pub fn get(
        &self,
        seq: i64,
        project: &ProjectRow,
        object: &JsonObject,
        now: Instant,
    ) -> Option<Bytes> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let encoded = kept.get(&project.id)?;
        let same = encoded.seq == seq && encoded.project == *project && encoded.object == *object;
        (same && now.saturating_duration_since(encoded.made) < FRESH_FOR)
            .then(|| encoded.body.clone())
    }

    /// Keeps the encoding of a dataset read at `seq`, made at `now`.
    pub fn put(
        &self,
        seq: i64,
        project: ProjectRow,
        object: JsonObject,
        body: Bytes,
        now: Instant,
    ) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT && !kept.contains_key(&project.id) {
            kept.retain(|_, e| now.saturating_duration_since(e.made) < FRESH_FOR);
            if kept.len() >= KEPT {
                kept.clear();
            }
        }
        kept.insert(
            project.id,
            Encoded {
                seq,
                project,
                object,
                made: now,
                body,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(name: &str) -> ProjectRow {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        ProjectRow {
            id: Uuid::from_u128(7),
            key: None,
            name: name.into(),
            body: JsonObject::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    const BODY: Bytes = Bytes::from_static(b"{}}}");

    #[test]
    fn an_encoding_is_shared_only_for_the_same_read_while_fresh() {
        let datasets = Datasets::default();
        let object = JsonObject::new();
        let made = Instant::now();
        assert_eq!(datasets.get(5, &project("P"), &object, made), None);
        datasets.put(5, project("P"), object.clone(), BODY, made);
        assert_eq!(datasets.get(5, &project("P"), &object, made), Some(BODY));
        // Another seq, project row or project object: read again.
        assert_eq!(datasets.get(6, &project("P"), &object, made), None);
        assert_eq!(datasets.get(5, &project("Renamed"), &object, made), None);
        let mut hours = JsonObject::new();
        hours.insert("hoursPerDay".into(), json!(7));
        assert_eq!(datasets.get(5, &project("P"), &hours, made), None);
        // Stale after FRESH_FOR.
        let later = made + FRESH_FOR;
        assert_eq!(datasets.get(5, &project("P"), &object, later), None);
    }

    #[test]
    fn the_node_keeps_a_bounded_number_of_projects() {
        let datasets = Datasets::default();
        let now = Instant::now();
        for n in 0..(KEPT as u128 + 10) {
            let mut row = project("P");
            row.id = Uuid::from_u128(n);
            datasets.put(1, row, JsonObject::new(), BODY, now);
        }
        let kept = datasets.kept.lock().unwrap().len();
        assert!(kept <= KEPT, "{kept}");
    }
}
