//! Server-Sent Events (CONTRACT §7): `GET /api/v1/projects/{id}/events` with a Bearer token,
//! read `id:`/`data:` messages from the chunked body.

use super::{Connection, Delivery, Dialect, Kind, User, last_string_field, sent_ns_of};
use anyhow::{Context, bail};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

pub struct Sse {
    pub base: String,
    pub project_id: String,
    /// One client per source address: reqwest binds every connection of a client to one
    /// local address.
    pub clients: HashMap<IpAddr, reqwest::Client>,
}

impl Sse {
    pub fn new(base: String, project_id: String, sources: &[IpAddr]) -> anyhow::Result<Sse> {
        let mut clients = HashMap::new();
        for source in sources {
            let client = reqwest::Client::builder()
                .local_address(*source)
                .no_proxy()
                .tcp_nodelay(true)
                // Streams are never reused; idle pooling would only hold file descriptors.
                .pool_max_idle_per_host(0)
                .build()?;
            clients.insert(*source, client);
        }
        Ok(Sse {
            base,
            project_id,
            clients,
        })
    }
}

#[async_trait]
impl Dialect for Sse {
    fn name(&self) -> &'static str {
        "sse"
    }

    async fn open(&self, user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>> {
        let client = self
            .clients
            .get(&source)
            .context("no client for this source address")?;
        let response = client
            .get(format!(
                "{}/api/v1/projects/{}/events",
                self.base, self.project_id
            ))
            .bearer_auth(&user.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .context("opening the stream")?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "events: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(Box::new(SseConnection {
            response,
            parser: Parser::default(),
            ready: VecDeque::new(),
        }))
    }
}

struct SseConnection {
    response: reqwest::Response,
    parser: Parser,
    ready: VecDeque<Delivery>,
}

#[async_trait]
impl Connection for SseConnection {
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>> {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Ok(Some(d));
            }
            match self.response.chunk().await? {
                None => return Ok(None),
                Some(bytes) => {
                    let ready = &mut self.ready;
                    self.parser
                        .feed(&bytes, |id, data| ready.push_back(classify(id, data)));
                }
            }
        }
    }
}

/// What one SSE message means to the measurement.
pub fn classify(id: Option<&str>, data: &str) -> Delivery {
    let seq = id.and_then(|i| i.trim().parse().ok());
    let kind = if seq.is_some() {
        Kind::Event
    } else if last_string_field(data, "type") == Some("resync_required") {
        Kind::Resync
    } else {
        Kind::Other
    };
    Delivery {
        kind,
        seq,
        sent_ns: sent_ns_of(last_string_field(data, "tabId")),
    }
}

/// An incremental SSE parser: bytes in, `(id, data)` per complete message out. Comments
/// (`: keepalive`) and fields other than `id`/`data` are skipped; several `data:` lines join
/// with `\n` as the EventSource specification says.
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    id: Option<String>,
    data: Option<String>,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(Option<&str>, &str)) {
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                if let Some(data) = self.data.take() {
                    emit(self.id.as_deref(), &data);
                }
                // The id belongs to its message here; the server sends one per event.
                self.id = None;
            } else {
                let line = String::from_utf8_lossy(&self.line);
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line.as_ref(), ""),
                };
                match field {
                    "id" => self.id = Some(value.to_owned()),
                    "data" => match &mut self.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => self.data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            self.line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&str]) -> Vec<(Option<String>, String)> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            parser.feed(c.as_bytes(), |id, data| {
                out.push((id.map(str::to_owned), data.to_owned()))
            });
        }
        out
    }

    #[test]
    fn messages_split_across_chunks() {
        let out = parse_all(&[
            "data: {\"type\":\"connected\"}\n\n: keepalive\n\nid: 7\nda",
            "ta: {\"type\":\"ticket.updated\",\"tabId\":\"lg-10\"}\r\n\r\nid: 8\ndata: a\ndata: b\n\n",
        ]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], (None, "{\"type\":\"connected\"}".to_owned()));
        assert_eq!(out[1].0.as_deref(), Some("7"));
        assert_eq!(classify(out[1].0.as_deref(), &out[1].1).sent_ns, Some(10));
        assert_eq!(out[2], (Some("8".to_owned()), "a\nb".to_owned()));
    }

    #[test]
    fn messages_are_classified() {
        let d = classify(
            Some("3"),
            r#"{"type":"ticket.updated","data":{"name":"lg 1"},"tabId":"lg-42","timestamp":"t"}"#,
        );
        assert_eq!(
            d,
            Delivery {
                kind: Kind::Event,
                seq: Some(3),
                sent_ns: Some(42)
            }
        );
        let r = classify(
            None,
            r#"{"type":"resync_required","data":{"latest_seq":3}}"#,
        );
        assert_eq!(r.kind, Kind::Resync);
        let c = classify(None, r#"{"type":"connected","userId":"u"}"#);
        assert_eq!(
            c,
            Delivery {
                kind: Kind::Other,
                seq: None,
                sent_ns: None
            }
        );
    }
}
