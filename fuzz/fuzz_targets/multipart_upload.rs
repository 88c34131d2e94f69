//! An attachment upload (`POST /api/v1/projects/{id}/attachments`): a multipart body read the
//! way `api::attachments::upload` reads it (axum's `Multipart`, a `task_id` field, a `file`
//! field whose name is cleaned and later sent back in `Content-Disposition`), without the
//! store and the file system. The input is a boundary, a newline, and the body.
#![no_main]

use axum::body::Body;
use axum::extract::{FromRequest, Multipart};
use axum::http::{HeaderValue, Request};
use domain::collections::ATTACHMENTS;
use libfuzzer_sys::fuzz_target;
use server::api::attachments::{clean_filename, content_disposition};

fuzz_target!(|data: &[u8]| {
    let (boundary, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => return,
    };
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    let Ok(content_type) =
        HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
    else {
        return;
    };
    let mut request = Request::new(Body::from(body.to_vec()));
    request
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, content_type);
    futures::executor::block_on(read(request));
});

async fn read(request: Request<Body>) {
    let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
        return;
    };
    // A body is finite, so is the number of its fields; the bound keeps a run short.
    for _ in 0..1_000 {
        let Ok(Some(field)) = multipart.next_field().await else {
            return;
        };
        match field.name() {
            Some("task_id") => {
                let Ok(text) = field.text().await else {
                    return;
                };
                let task_id: String = text.chars().take(64).collect();
                let spec = ATTACHMENTS.field("task_id").expect("task_id");
                let _ = domain::validate::check_value(spec, &serde_json::json!(task_id));
            }
            Some("file") => {
                if let Ok(name) = clean_filename(field.file_name().unwrap_or("file")) {
                    // The download sends the name back in a header: it must always fit one.
                    let header = content_disposition(&name);
                    assert!(HeaderValue::from_str(&header).is_ok(), "{header:?}");
                    assert!(name.chars().count() <= 255);
                }
                let _ = field
                    .content_type()
                    .filter(|t| t.len() <= 255 && t.is_ascii());
                let Ok(_) = field.bytes().await else {
                    return;
                };
            }
            _ => {}
        }
    }
}
