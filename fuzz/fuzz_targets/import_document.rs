//! An import document (`POST /api/v1/admin/import`, `liveplan import`): parsed as the server
//! parses it, then every check the domain runs before it writes anything
//! (`domain::transfer::check_import`: the API's validation over the whole document, references,
//! trees, cycles, owners, unique ids and names, seqs and timestamps).
#![no_main]

use domain::Actor;
use domain::transfer::check_import;
use libfuzzer_sys::fuzz_target;
use server::transfer::parse_document;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = parse_document(data) else {
        return;
    };
    let now = chrono::DateTime::UNIX_EPOCH;
    let _ = check_import(&document, None, now, 1_000);
    let importer = Actor {
        user_id: Uuid::from_u128(1),
        is_admin: true,
        tab_id: None,
    };
    let _ = check_import(&document, Some(&importer), now, 1_000);
});
