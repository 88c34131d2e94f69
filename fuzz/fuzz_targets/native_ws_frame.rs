//! A client text frame on the native WebSocket (CONTRACT §6): whatever it holds, the parser
//! answers Ping, Reserved or Invalid, and only a JSON object is anything but Invalid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::dialects::native_ws::protocol::{ClientText, parse_client_text};

fuzz_target!(|data: &[u8]| {
    // The WebSocket layer closes with 1007 on a text frame that is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_client_text(text);
    let is_object = matches!(
        serde_json::from_str::<serde_json::Value>(text),
        Ok(serde_json::Value::Object(_))
    );
    assert_eq!(parsed != ClientText::Invalid, is_object, "{text:?}");
});
