//! Per-project webhooks (CONTRACT §12): who may manage them (Admin and above, as
//! [`crate::access::WEBHOOK_ROLE`] says), what a webhook may be (validated here, whatever the
//! transport), and the commands. Delivery itself is the server's (`liveplan_server::webhooks`),
//! driven by each webhook's cursor over its project's log.
//!
//! Choices where the contract is silent:
//! - The secret is generated (256 bits, hex) when the request gives none and is shown only in
//!   the answer to the create; reads never show it. A `PATCH` may set a new one.
//! - A webhook starts at its project stream's head, read while the creating transaction holds
//!   the stream: it receives exactly the events committed after it was created.
//! - Events are dotted names of events written to the project's own log
//!   ([`proto::EventType::in_project_log`]), or `*`; project lifecycle, user and database
//!   events are in the `system` stream, which no project webhook follows, and are refused.
//! - A URL naming a loopback, private, link-local, unspecified or multicast address literally is
//!   refused (422) unless the server allows private targets; names are resolved and checked at
//!   every delivery instead.

use crate::access::{WEBHOOK_ROLE, project_role, require};
use crate::tx::Tx;
use crate::validate::{as_object, invalid_field};
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, EventType, StreamKey};
use rand::RngCore;
use serde_json::{Map, Value, json};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use store::{DELIVERIES_KEPT, Queries, WebhookDeliveryRow, WebhookRow, format_ts};
use uuid::Uuid;

/// The most webhooks one project may have.
pub const MAX_WEBHOOKS_PER_PROJECT: usize = 20;
/// The longest URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The most entries in `events`.
pub const MAX_EVENTS: usize = 64;
/// A given secret's length bounds, in bytes.
pub const SECRET_MIN: usize = 16;
pub const SECRET_MAX: usize = 256;
/// What `events` may hold besides dotted names: every event.
pub const ALL_EVENTS: &str = "*";

/// The fields a create or change may carry.
const FIELDS: [&str; 4] = ["url", "events", "secret", "active"];

/// The dotted names a webhook may subscribe to, in catalog order.
pub fn subscribable_events() -> impl Iterator<Item = &'static str> {
    EventType::ALL
        .iter()
        .filter(|e| e.in_project_log())
        .map(|e| e.dotted())
}

/// Whether a webhook subscribed to `events` wants `event`.
pub fn wants(events: &[String], event: EventType) -> bool {
    events
        .iter()
        .any(|name| name == ALL_EVENTS || name == event.dotted())
}

/// Addresses no webhook may be sent to unless private targets are allowed: loopback, private,
/// shared (CGNAT), link-local, unspecified, multicast, broadcast and reserved ones; IPv6's
/// unique-local, site-local and link-local too, and IPv4 inside IPv6 (mapped, compatible,
/// NAT64) by the IPv4 address it carries.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4 address.
    if segments[..6] == [0, 0, 0, 0, 0, 0] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        if !(ip.is_loopback() || ip.is_unspecified()) {
            return forbidden_v4(v4);
        }
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
}

/// A webhook URL: `http` or `https`, a host, no user info, at most [`MAX_URL_LEN`] bytes, and
/// (unless `allow_private`) no forbidden literal address. Returns it as parsed.
pub fn check_url(value: &Value, allow_private: bool) -> DomainResult<String> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid_field("url", "must be a string"))?;
    if text.len() > MAX_URL_LEN {
        return Err(invalid_field(
            "url",
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let url = url::Url::parse(text).map_err(|_| invalid_field("url", "is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_field("url", "must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid_field(
            "url",
            "must not hold a user name or password",
        ));
    }
    let literal = match url.host() {
        None => return Err(invalid_field("url", "must name a host")),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = literal
        && !allow_private
        && forbidden_ip(ip)
    {
        return Err(invalid_field(
            "url",
            "names a loopback, private, link-local or otherwise internal address",
        ));
    }
    Ok(url.to_string())
}

/// `events`: 1 to [`MAX_EVENTS`] known dotted names of project events, or `*`; duplicates
/// dropped, order kept.
pub fn check_events(value: &Value) -> DomainResult<Vec<String>> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid_field("events", "must be an array of event names"))?;
    if items.is_empty() || items.len() > MAX_EVENTS {
        return Err(invalid_field(
            "events",
            format!("must hold 1 to {MAX_EVENTS} names"),
        ));
    }
    let mut events: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| invalid_field("events", "must be an array of event names"))?;
        let known = name == ALL_EVENTS
            || EventType::parse_dotted(name).is_some_and(EventType::in_project_log);
        if !known {
            let shown: String = name.chars().take(64).collect();
            return Err(invalid_field(
                "events",
                format!(
                    "{shown:?} is not a dotted name of a project event (such as \"task.created\") or \"*\""
                ),
            ));
        }
        if !events.iter().any(|e| e == name) {
            events.push(name.to_owned());
        }
    }
    Ok(events)
}

/// A given secret: [`SECRET_MIN`] to [`SECRET_MAX`] bytes of printable ASCII.
pub fn check_secret(value: &Value) -> DomainResult<String> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid_field("secret", "must be a string"))?;
    if !(SECRET_MIN..=SECRET_MAX).contains(&text.len())
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid_field(
            "secret",
            format!("must be {SECRET_MIN} to {SECRET_MAX} printable ASCII characters"),
        ));
    }
    Ok(text.to_owned())
}

fn check_active(value: &Value) -> DomainResult<bool> {
    value
        .as_bool()
        .ok_or_else(|| invalid_field("active", "must be true or false"))
}

/// 256 random bits in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn refuse_unknown(input: &Map<String, Value>) -> DomainResult<()> {
    match input.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        Some(field) => Err(invalid_field(
            field,
            "is not a webhook field (url, events, secret, active)",
        )),
        None => Ok(()),
    }
}

/// A webhook as the API shows it; the secret only when `with_secret` (the create's answer).
pub fn webhook_json(row: &WebhookRow, with_secret: bool) -> Value {
    let mut value = json!({
        "id": row.id,
        "project_id": row.project_id,
        "url": row.url,
        "events": row.events,
        "active": row.active,
        "last_seq": row.cursor,
        "created_at": format_ts(row.created_at),
        "updated_at": format_ts(row.updated_at),
    });
    if with_secret {
        value["secret"] = json!(row.secret);
    }
    value
}

pub fn delivery_json(row: &WebhookDeliveryRow) -> Value {
    json!({
        "id": row.id,
        "webhook_id": row.webhook_id,
        "seq": row.seq,
        "event": row.event,
        "outcome": row.outcome,
        "attempts": row.attempts,
        "response_status": row.response_status,
        "error": row.error,
        "created_at": format_ts(row.created_at),
        "updated_at": format_ts(row.updated_at),
    })
}

async fn load(ops: &mut dyn Queries, project_id: Uuid, id: Uuid) -> DomainResult<WebhookRow> {
    ops.get_webhook(id)
        .await
        .or_api()?
        .filter(|w| w.project_id == project_id)
        .ok_or_else(|| ApiError::not_found("webhook"))
}

impl Domain {
    /// Reads need the webhook role as writes do: a webhook's URL is the project's
    /// administrators' business.
    async fn webhook_reader(
        &self,
        actor: &Actor,
        project_id: Uuid,
    ) -> DomainResult<Box<dyn Queries>> {
        let mut ops = self.store.read().await.or_api()?;
        let (_, role) = project_role(&mut *ops, project_id, actor).await?;
        require(role, WEBHOOK_ROLE, "managing webhooks")?;
        Ok(ops)
    }

    pub async fn list_webhooks(&self, actor: &Actor, project_id: Uuid) -> DomainResult<Vec<Value>> {
        let mut ops = self.webhook_reader(actor, project_id).await?;
        Ok(ops
            .list_webhooks(project_id)
            .await
            .or_api()?
            .iter()
            .map(|w| webhook_json(w, false))
            .collect())
    }

    pub async fn get_webhook(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
    ) -> DomainResult<Value> {
        let mut ops = self.webhook_reader(actor, project_id).await?;
        Ok(webhook_json(&load(&mut *ops, project_id, id).await?, false))
    }

    /// The webhook's deliveries, newest first (at most [`DELIVERIES_KEPT`] are kept).
    pub async fn list_webhook_deliveries(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
    ) -> DomainResult<Vec<Value>> {
        let mut ops = self.webhook_reader(actor, project_id).await?;
        load(&mut *ops, project_id, id).await?;
        Ok(ops
            .list_webhook_deliveries(id, DELIVERIES_KEPT)
            .await
            .or_api()?
            .iter()
            .map(delivery_json)
            .collect())
    }

    /// `{url, events, secret?, active?}` → the webhook with its secret, starting at the
    /// project stream's head.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        project_id: Uuid,
        input: &Value,
    ) -> DomainResult<Value> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, WEBHOOK_ROLE, "managing webhooks")?;
        let input = as_object(input)?;
        refuse_unknown(input)?;
        let url = check_url(
            input
                .get("url")
                .ok_or_else(|| invalid_field("url", "is required"))?,
            self.webhooks_allow_private,
        )?;
        let events = check_events(
            input
                .get("events")
                .ok_or_else(|| invalid_field("events", "is required"))?,
        )?;
        let secret = match input.get("secret") {
            None | Some(Value::Null) => generate_secret(),
            Some(value) => check_secret(value)?,
        };
        let active = input.get("active").map(check_active).transpose()?;
        if tx.ops().list_webhooks(project_id).await.or_api()?.len() >= MAX_WEBHOOKS_PER_PROJECT {
            return Err(ApiError::invalid(format!(
                "a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks"
            ))
            .with_details(json!({ "limit": MAX_WEBHOOKS_PER_PROJECT })));
        }
        // Read while the transaction holds the stream: nothing commits in between, so the
        // webhook gets every event after this one and none before.
        let cursor = tx
            .ops()
            .latest_seq(StreamKey::Project(project_id))
            .await
            .or_api()?;
        let row = WebhookRow {
            id: Uuid::now_v7(),
            project_id,
            url,
            events,
            secret,
            active: active.unwrap_or(true),
            cursor,
            created_at: tx.now,
            updated_at: tx.now,
        };
        tx.ops().insert_webhook(&row).await.or_api()?;
        tx.commit().await?;
        Ok(webhook_json(&row, true))
    }

    /// `{url?, events?, secret?, active?}`; the cursor stays where it is.
    pub async fn update_webhook(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
        input: &Value,
    ) -> DomainResult<Value> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, WEBHOOK_ROLE, "managing webhooks")?;
        let mut row = load(tx.ops(), project_id, id).await?;
        let input = as_object(input)?;
        refuse_unknown(input)?;
        if let Some(url) = input.get("url") {
            row.url = check_url(url, self.webhooks_allow_private)?;
        }
        if let Some(events) = input.get("events") {
            row.events = check_events(events)?;
        }
        if let Some(secret) = input.get("secret") {
            row.secret = check_secret(secret)?;
        }
        if let Some(active) = input.get("active") {
            row.active = check_active(active)?;
        }
        row.updated_at = tx.now;
        if !tx.ops().update_webhook(&row).await.or_api()? {
            return Err(ApiError::not_found("webhook"));
        }
        tx.commit().await?;
        Ok(webhook_json(&row, false))
    }

    pub async fn delete_webhook(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
    ) -> DomainResult<()> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, WEBHOOK_ROLE, "managing webhooks")?;
        load(tx.ops(), project_id, id).await?;
        tx.ops().delete_webhook(id).await.or_api()?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(forbidden_ip(ip(bad)), "{bad} must be forbidden");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!forbidden_ip(ip(good)), "{good} must be allowed");
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = |t: &str, private| check_url(&json!(t), private);
        assert!(ok("http://hooks.example/in", false).is_ok());
        assert!(ok("https://hooks.example:8443/in?x=1", false).is_ok());
        assert!(
            ok("http://localhost:9/", false).is_ok(),
            "names resolve at delivery"
        );
        assert!(ok("http://93.184.216.34/", false).is_ok());
        for bad in [
            "ftp://hooks.example/",
            "hooks.example/in",
            "http://user:pw@hooks.example/",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://10.0.0.1/",
            "file:///etc/passwd",
            "",
        ] {
            assert!(ok(bad, false).is_err(), "{bad}");
        }
        assert!(ok("http://127.0.0.1:8080/", true).is_ok());
        assert!(check_url(&json!(42), true).is_err());
        let long = format!("http://hooks.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(ok(&long, true).is_err());
    }

    #[test]
    fn events_are_known_dotted_names() {
        assert_eq!(
            check_events(&json!(["task.created", "*", "task.created"])).unwrap(),
            ["task.created", "*"]
        );
        for bad in [
            json!([]),
            json!(["task_created"]),
            json!(["task.moved"]),
            json!(["presence.join"]),
            json!(["project.updated"]),
            json!([1]),
            json!("task.created"),
            json!(vec!["*"; MAX_EVENTS + 1]),
        ] {
            assert!(check_events(&bad).is_err(), "{bad}");
        }
        assert!(wants(&["*".into()], EventType::CpmComplete));
        assert!(wants(&["task.created".into()], EventType::TaskCreated));
        assert!(!wants(&["task.created".into()], EventType::TaskUpdated));
        assert!(subscribable_events().any(|e| e == "sprint.scope_changed"));
    }

    #[test]
    fn secrets_are_bounded() {
        assert_eq!(generate_secret().len(), 64);
        assert_ne!(generate_secret(), generate_secret());
        assert!(check_secret(&json!("0123456789abcdef")).is_ok());
        assert!(check_secret(&json!("short")).is_err());
        assert!(check_secret(&json!("with a space inside")).is_err());
        assert!(check_secret(&json!("x".repeat(SECRET_MAX + 1))).is_err());
        assert!(check_secret(&json!(null)).is_err());
    }
}
