//! A REST JSON body for each collection, for projects and for users, through the validation
//! the API runs before it touches the store (CONTRACT §4, §5). The first byte picks what the
//! body is for; the rest is the body. Anything validation accepts must fit the size check and
//! serialize back.
#![no_main]

use domain::accounts::parse_user_input;
use domain::collections::ALL;
use domain::projects::validate_project;
use domain::records::check_body_size;
use domain::validate::{Mode, references, validate_fields};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let pick = usize::from(pick) % (ALL.len() + 2);
    if pick == ALL.len() {
        let _ = validate_project(&value, true);
        let _ = validate_project(&value, false);
        return;
    }
    if pick == ALL.len() + 1 {
        let _ = parse_user_input(&value, true);
        let _ = parse_user_input(&value, false);
        return;
    }
    let collection = ALL[pick];
    for mode in [Mode::Create, Mode::Patch] {
        if let Ok(fields) = validate_fields(collection, &value, mode) {
            let _ = check_body_size(collection, &fields);
            let _ = references(collection, &fields);
            serde_json::to_vec(&fields).expect("a validated body serializes");
        }
    }
});
