//! A streaming SSE reader: one block at a time, as the server writes them.

use crate::GUARD;
use crate::server::TestServer;
use serde_json::Value;

impl TestServer {
    pub async fn sse(&self, token: &str, path: &str, last_event_id: Option<i64>) -> SseReader {
        let mut request = self.http.get(self.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(GUARD, request.send())
            .await
            .expect("SSE response in time")
            .unwrap();
        assert_eq!(response.status(), 200, "SSE {path}");
        SseReader::new(response)
    }
}

/// One SSE block: its fields, or a comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// Reads an SSE body block by block, as it streams.
pub struct SseReader {
    pub response: Option<reqwest::Response>,
    pub headers: reqwest::header::HeaderMap,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            headers: response.headers().clone(),
            response: Some(response),
            buffer: Vec::new(),
        }
    }

    /// The next block; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("UTF-8");
                let mut message = SseMessage::default();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if let Some(rest) = line.strip_prefix(':') {
                        message.comment = Some(rest.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                        match field {
                            "id" => message.id = Some(value),
                            "data" => message.data = Some(value),
                            _ => {}
                        }
                    }
                }
                return Some(message);
            }
            let response = self.response.as_mut()?;
            let chunk = tokio::time::timeout(GUARD, response.chunk())
                .await
                .expect("SSE data in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => {
                    self.response = None;
                    return None;
                }
            }
        }
    }

    /// The next message with data (comments skipped).
    pub async fn data(&mut self) -> Option<SseMessage> {
        loop {
            let message = self.next().await?;
            if message.data.is_some() {
                return Some(message);
            }
        }
    }

    /// The next message that is not presence.
    pub async fn event(&mut self) -> Option<SseMessage> {
        loop {
            let message = self.data().await?;
            let kind = message.json()["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !kind.starts_with("presence.") {
                return Some(message);
            }
        }
    }

    /// Reads until the stream ends; fails if it does not.
    pub async fn ended(&mut self) {
        while self.next().await.is_some() {}
    }
}
