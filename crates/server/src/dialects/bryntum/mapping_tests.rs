//! The mapping's tests, apart so `mapping.rs` stays a readable size.

use super::*;

fn obj(value: Value) -> Object {
    value.as_object().cloned().unwrap()
}

#[test]
fn tasks_map_both_ways_and_keep_unknown_fields() {
    let units = Units::default();
    let bryntum = obj(json!({
        "id": "x", "$PhantomId": "_p1", "name": "Build", "parentId": "0190",
        "startDate": "2019-01-14T00:00:00Z", "endDate": "2019-01-16T00:00:00Z",
        "duration": 12, "durationUnit": "hour", "percentDone": 50, "effort": 48,
        "effortUnit": "hour", "cls": "", "constraintType": "startnoearlierthan",
        "constraintDate": "2019-01-14", "manuallyScheduled": false, "calendar": null,
        "baselines": [], "parentIndex": 5
    }));
    let stored = to_liveplan(BryntumStore::Tasks, &bryntum, &units, None).unwrap();
    assert_eq!(stored["scheduled_start"], json!("2019-01-14T00:00:00Z"));
    assert_eq!(stored["scheduled_finish"], json!("2019-01-16T00:00:00Z"));
    assert_eq!(
        stored["duration"],
        json!(1.5),
        "12 hours are 1.5 working days"
    );
    assert_eq!(stored["durationUnit"], json!("hour"));
    assert_eq!(stored["percent_complete"], json!(50));
    assert_eq!(stored["constraint_type"], json!("snet"));
    assert_eq!(stored["parent_id"], json!("0190"));
    assert_eq!(stored["effort"], json!(48));
    assert!(!stored.contains_key("id") && !stored.contains_key("$PhantomId"));
    let back = to_bryntum(BryntumStore::Tasks, "x", &stored, &units);
    for (key, value) in &bryntum {
        if key != "$PhantomId" {
            assert_eq!(back.get(key), Some(value), "{key}");
        }
    }
}

#[test]
fn durations_and_lags_convert_without_truncation() {
    let units = Units::default();
    let week = to_liveplan(
        BryntumStore::Tasks,
        &obj(json!({"duration": 1.5, "durationUnit": "week"})),
        &units,
        None,
    )
    .unwrap();
    assert_eq!(week["duration"], json!(7.5));
    // An update that only resends the number keeps the stored unit.
    let update = to_liveplan(
        BryntumStore::Tasks,
        &obj(json!({"duration": 3})),
        &units,
        Some(&week),
    )
    .unwrap();
    assert_eq!(update["duration"], json!(15));
    let lag = to_liveplan(
        BryntumStore::Dependencies,
        &obj(json!({"from": "a", "to": "b", "type": 0, "lag": 4, "lagUnit": "h"})),
        &units,
        None,
    )
    .unwrap();
    assert_eq!(lag["lag"], json!(0.5));
    assert_eq!(lag["type"], json!("SS"));
    let back = to_bryntum(BryntumStore::Dependencies, "d", &lag, &units);
    assert_eq!(back["lag"], json!(4));
    assert_eq!(back["lagUnit"], json!("h"));
    assert_eq!(back["fromEvent"], json!("a"));
    assert_eq!(back["to"], json!("b"));
    assert_eq!(back["type"], json!(0));
}

#[test]
fn dependency_types_are_numbered_like_bryntum() {
    for (number, name) in [(0, "SS"), (1, "SF"), (2, "FS"), (3, "FF")] {
        assert_eq!(dependency_type_in(&json!(number)).unwrap(), json!(name));
        assert_eq!(dependency_type_out(Some(&json!(name))), json!(number));
    }
    assert!(dependency_type_in(&json!(7)).is_err());
    assert!(dependency_type_in(&json!(-1)).is_err());
}

#[test]
fn scheduler_outputs_never_reach_bryntum() {
    let body = obj(json!({
        "name": "A", "early_start": "2026-01-01", "total_float": 3, "is_critical": true,
        "start_date": "2026-01-01", "story_points": 3
    }));
    let out = to_bryntum(BryntumStore::Tasks, "t", &body, &Units::default());
    assert_eq!(out, obj(json!({"id": "t", "name": "A", "parentId": null})));
}

#[test]
fn calendars_map_intervals() {
    let intervals = json!([
        {"recurrentStartDate": "on Sat at 0:00", "recurrentEndDate": "on Mon at 0:00", "isWorking": false},
        {"startDate": "2026-04-03", "endDate": "2026-04-07", "isWorking": false, "name": "Easter"}
    ]);
    let stored = to_liveplan(
        BryntumStore::Calendars,
        &obj(json!({"name": "General", "intervals": intervals, "unspecifiedTimeIsWorking": true})),
        &Units::default(),
        None,
    )
    .unwrap();
    assert_eq!(stored["working_days"], json!([1, 2, 3, 4, 5]));
    assert_eq!(
        stored["exceptions"],
        json!([{"start": "2026-04-03", "end": "2026-04-06", "name": "Easter", "is_working": false}])
    );
    let back = to_bryntum(BryntumStore::Calendars, "c", &stored, &Units::default());
    assert_eq!(
        back["intervals"], intervals,
        "unchanged intervals come back as sent"
    );
    assert_eq!(back["unspecifiedTimeIsWorking"], json!(true));
    // Another client made Friday a non-working day: the intervals are generated.
    let mut changed = stored.clone();
    changed.insert("working_days".into(), json!([1, 2, 3, 4]));
    let back = to_bryntum(BryntumStore::Calendars, "c", &changed, &Units::default());
    let generated = back["intervals"].as_array().unwrap();
    assert_eq!(generated.len(), 4);
    assert_eq!(generated[0]["recurrentStartDate"], json!("on Fri at 0:00"));
    assert_eq!(generated[3]["endDate"], json!("2026-04-07"));
    let (days, _) = intervals_in(&back["intervals"]).unwrap();
    assert_eq!(days, vec![1, 2, 3, 4]);
}

#[test]
fn odd_intervals_never_panic() {
    for text in ["on Sä at 0:00", "on ", "on ééé", "onSat", "on Sat at 17:00"] {
        let value = json!([{"recurrentStartDate": text, "recurrentEndDate": text}]);
        assert_eq!(intervals_in(&value).unwrap().0, vec![1, 2, 3, 4, 5, 6, 7]);
    }
    assert!(intervals_in(&json!("x")).is_err());
    assert!(intervals_in(&json!([1])).is_err());
}

#[test]
fn assignments_and_resources() {
    let units = Units::default();
    let stored = to_liveplan(
        BryntumStore::Assignments,
        &obj(json!({"event": "t", "resource": "r", "units": 50})),
        &units,
        None,
    )
    .unwrap();
    assert_eq!(
        stored,
        obj(json!({"task_id": "t", "resource_id": "r", "units": 50}))
    );
    let back = to_bryntum(BryntumStore::Assignments, "a", &stored, &units);
    assert_eq!(
        back,
        obj(json!({"id": "a", "event": "t", "resource": "r", "units": 50}))
    );
    let resource = to_liveplan(
        BryntumStore::Resources,
        &obj(json!({"name": "Ann", "calendar": "c", "city": "Oslo"})),
        &units,
        None,
    )
    .unwrap();
    assert_eq!(resource["calendar_id"], json!("c"));
    assert_eq!(resource["city"], json!("Oslo"));
}

#[test]
fn versions_get_a_name_and_hide_content() {
    let stored = to_liveplan(
        BryntumStore::Versions,
        &obj(json!({"savedAt": "2026-01-01T10:00:00", "content": {"tasks": []}})),
        &Units::default(),
        None,
    )
    .unwrap();
    assert_eq!(stored["name"], json!("Version 2026-01-01T10:00:00"));
    let back = to_bryntum(BryntumStore::Versions, "v", &stored, &Units::default());
    assert!(back.get("content").is_none());
    assert_eq!(back["savedAt"], json!("2026-01-01T10:00:00"));
}

#[test]
fn tree_orders_children_by_parent_index() {
    let tasks = vec![
        obj(json!({"id": "r", "parentId": null})),
        obj(json!({"id": "b", "parentId": "r", "parentIndex": 1})),
        obj(json!({"id": "a", "parentId": "r", "parentIndex": 0})),
        obj(json!({"id": "o", "parentId": "missing"})),
    ];
    let tree = task_tree(tasks);
    assert_eq!(tree.len(), 2);
    assert_eq!(tree[0]["children"][0]["id"], json!("a"));
    assert_eq!(tree[0]["children"][1]["id"], json!("b"));
    assert_eq!(tree[1]["id"], json!("o"));
}

#[test]
fn unknown_constraints_and_units_are_refused() {
    let units = Units::default();
    assert!(
        to_liveplan(
            BryntumStore::Tasks,
            &obj(json!({"constraintType": "whenever"})),
            &units,
            None
        )
        .is_err()
    );
    assert!(
        to_liveplan(
            BryntumStore::Tasks,
            &obj(json!({"duration": 1, "durationUnit": "fortnight"})),
            &units,
            None
        )
        .is_err()
    );
    assert!(
        to_liveplan(
            BryntumStore::Tasks,
            &obj(json!({"duration": "x"})),
            &units,
            None
        )
        .is_err()
    );
}
