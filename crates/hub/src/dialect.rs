//! Encoders. The hub encodes each event once per dialect that has subscribers and hands the same
//! `Bytes` to all of them; a dialect is therefore a pure function of the event.

use bytes::Bytes;
use chrono::SecondsFormat;
use proto::{Event, EventType};
use serde::Serialize;
use serde_json::Value;
use std::sync::LazyLock;

/// How one wire dialect spells an event.
pub trait Dialect: Send + Sync + 'static {
    /// The frame for `event`, or `None` when this dialect does not carry it. `replayed` is true
    /// for events read from the log to answer a client's `since` / `Last-Event-ID`.
    fn encode(&self, event: &Event, replayed: bool) -> Option<Bytes>;

    /// The frame telling a client that its position cannot be resumed and it must refetch.
    fn resync_required(&self, latest_seq: i64) -> Bytes;
}

/// Handle of a dialect registered with a hub (see [`crate::HubBuilder::dialect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialectId(pub(crate) usize);

impl DialectId {
    /// Its registration order: the index of its counts in [`crate::HubStats::dialects`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// The events and resync frames are small; this covers most without a reallocation.
const FRAME_CAPACITY: usize = 256;

fn to_bytes(value: &impl Serialize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FRAME_CAPACITY);
    // Serializing plain structs of strings and `Value`s into a Vec cannot fail.
    serde_json::to_writer(&mut buf, value).expect("event serializes");
    buf
}

/// The native WebSocket dialect (CONTRACT §6): one JSON text frame per event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeWs;

#[derive(Serialize)]
struct WsFrame<'a> {
    protocol_version: u8,
    event_type: &'a str,
    payload: &'a Value,
    seq: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tab_id: Option<&'a str>,
}

#[derive(Serialize)]
struct LatestSeq {
    latest_seq: i64,
}

impl Dialect for NativeWs {
    fn encode(&self, event: &Event, replayed: bool) -> Option<Bytes> {
        let frame = WsFrame {
            protocol_version: 1,
            event_type: event.event_type.as_str(),
            payload: &event.payload,
            seq: event.seq,
            replayed,
            tab_id: event.tab_id.as_deref(),
        };
        Some(Bytes::from(to_bytes(&frame)))
    }

    fn resync_required(&self, latest_seq: i64) -> Bytes {
        let frame = WsFrame {
            protocol_version: 1,
            event_type: "resync_required",
            payload: &serde_json::to_value(LatestSeq { latest_seq }).expect("plain struct"),
            seq: None,
            replayed: false,
            tab_id: None,
        };
        Bytes::from(to_bytes(&frame))
    }
}

/// The Server-Sent Events dialect (CONTRACT §7): one `id:`/`data:` message per event, with the
/// PUNT type names. Each frame is a complete message including its blank-line terminator.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sse;

#[derive(Serialize)]
struct SseData<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
    #[serde(rename = "tabId", skip_serializing_if = "Option::is_none")]
    tab_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
}

fn sse_message(id: Option<i64>, data: &impl Serialize) -> Bytes {
    let json = to_bytes(data);
    let mut buf = Vec::with_capacity(json.len() + 32);
    if let Some(id) = id {
        buf.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    buf.extend_from_slice(b"data: ");
    // serde_json never emits a raw newline, so the JSON is always one `data:` line.
    buf.extend_from_slice(&json);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

impl Sse {
    /// The first message of every SSE stream: `{"type":"connected","userId":…}`.
    pub fn connected(user_id: uuid::Uuid) -> Bytes {
        #[derive(Serialize)]
        struct Connected {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(rename = "userId")]
            user_id: uuid::Uuid,
        }
        sse_message(
            None,
            &Connected {
                kind: "connected",
                user_id,
            },
        )
    }
}

impl Dialect for Sse {
    fn encode(&self, event: &Event, _replayed: bool) -> Option<Bytes> {
        let message = SseData {
            kind: punt_type(event.event_type, &event.payload),
            data: &event.data,
            tab_id: Some(event.tab_id.as_deref()),
            timestamp: Some(event.ts.to_rfc3339_opts(SecondsFormat::Millis, true)),
        };
        Some(sse_message(event.seq, &message))
    }

    fn resync_required(&self, latest_seq: i64) -> Bytes {
        let message = SseData {
            kind: "resync_required",
            data: LatestSeq { latest_seq },
            tab_id: None,
            timestamp: None,
        };
        sse_message(None, &message)
    }
}

/// The Pusher Channels dialect (CONTRACT §10): liveplan's own channels fed by the event log.
/// A project stream's events go to `private-project-{id}`, a user stream's to
/// `private-user-{id}`; the event name is the canonical `event_type`, `data` the JSON string of
/// the `/log` shape, and `serial` (the seq) and `stream_id` sit beside them for resume.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pusher;

#[derive(Serialize)]
struct PusherData<'a> {
    seq: Option<i64>,
    event_type: &'a str,
    payload: &'a Value,
    data: &'a Value,
    actor_id: Option<uuid::Uuid>,
    tab_id: Option<&'a str>,
    timestamp: String,
}

#[derive(Serialize)]
struct PusherFrame<'a> {
    event: &'a str,
    channel: String,
    data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<i64>,
    stream_id: String,
}

impl Pusher {
    /// The Pusher channel a stream's events go to.
    pub fn channel(stream: &proto::StreamKey) -> Option<String> {
        match stream {
            proto::StreamKey::Project(id) => Some(format!("private-project-{id}")),
            proto::StreamKey::User(id) => Some(format!("private-user-{id}")),
            proto::StreamKey::System => None,
        }
    }

    /// The `stream_id` of a stream's frames: its seqs only ever move forward (a lost tail is
    /// skipped, never reused), so the stream's name stays valid for resume.
    pub fn stream_id(stream: &proto::StreamKey) -> String {
        stream.to_text()
    }
}

impl Dialect for Pusher {
    fn encode(&self, event: &Event, _replayed: bool) -> Option<Bytes> {
        let channel = Pusher::channel(&event.stream)?;
        let data = PusherData {
            seq: event.seq,
            event_type: event.event_type.as_str(),
            payload: &event.payload,
            data: &event.data,
            actor_id: event.actor_id,
            tab_id: event.tab_id.as_deref(),
            timestamp: event.ts.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let frame = PusherFrame {
            event: event.event_type.as_str(),
            channel,
            data: String::from_utf8(to_bytes(&data)).expect("serde_json writes UTF-8"),
            serial: event.seq,
            stream_id: Pusher::stream_id(&event.stream),
        };
        Some(Bytes::from(to_bytes(&frame)))
    }

    /// A position the log no longer holds: the socket is told with `pusher:error` and
    /// resumes by refetching (the frame names no channel: the socket's loop adds it).
    fn resync_required(&self, latest_seq: i64) -> Bytes {
        let frame = serde_json::json!({
            "event": "pusher:error",
            "data": {"code": 4300, "message": format!("resync required; latest serial {latest_seq}")},
        });
        Bytes::from(to_bytes(&frame))
    }
}

/// The rule for names without an exception: the first `_` becomes a `.`.
static DOTTED: LazyLock<Vec<String>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|t| t.as_str().replacen('_', ".", 1))
        .collect()
});

/// The PUNT (SSE) type name of an event (CONTRACT §7). `payload` matters only for
/// `task_updated`, which is `ticket.moved` when its `changed_fields` touch the board position.
pub fn punt_type(event_type: EventType, payload: &Value) -> &'static str {
    match event_type {
        EventType::TaskCreated => "ticket.created",
        EventType::TaskUpdated if moves_ticket(payload) => "ticket.moved",
        EventType::TaskUpdated => "ticket.updated",
        EventType::TaskDeleted => "ticket.deleted",
        EventType::MemberAdded => "member.added",
        EventType::MemberRemoved => "member.removed",
        EventType::MemberRoleChanged => "member.role.updated",
        EventType::SprintActivated => "sprint.started",
        EventType::SprintClosed => "sprint.completed",
        EventType::DatabaseWiped => "database.wiped",
        EventType::DatabaseProjectsWiped => "database.projects.wiped",
        // `EventType::ALL` lists the variants in declaration order, so the discriminant indexes it.
        other => DOTTED[other as usize].as_str(),
    }
}

fn moves_ticket(payload: &Value) -> bool {
    payload
        .get("changed_fields")
        .and_then(Value::as_array)
        .is_some_and(|fields| {
            fields
                .iter()
                .any(|f| matches!(f.as_str(), Some("status" | "column_id" | "rank")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proto::StreamKey;
    use serde_json::json;
    use uuid::Uuid;

    /// Every catalog name and its PUNT name. A new catalog entry fails this test until it is
    /// given a row here, which is the point.
    const PUNT: &[(&str, &str)] = &[
        ("project_created", "project.created"),
        ("project_updated", "project.updated"),
        ("project_deleted", "project.deleted"),
        ("project_calendar_changed", "project.calendar_changed"),
        ("member_added", "member.added"),
        ("member_role_changed", "member.role.updated"),
        ("member_removed", "member.removed"),
        ("task_created", "ticket.created"),
        ("task_updated", "ticket.updated"),
        ("task_deleted", "ticket.deleted"),
        ("tasks_reordered", "tasks.reordered"),
        ("tasks_bulk_mutated", "tasks.bulk_mutated"),
        ("dependency_created", "dependency.created"),
        ("dependency_updated", "dependency.updated"),
        ("dependency_deleted", "dependency.deleted"),
        ("dependency_accepted", "dependency.accepted"),
        ("dependency_rejected", "dependency.rejected"),
        ("resource_created", "resource.created"),
        ("resource_updated", "resource.updated"),
        ("resource_deleted", "resource.deleted"),
        ("assignment_created", "assignment.created"),
        ("assignment_updated", "assignment.updated"),
        ("assignment_deleted", "assignment.deleted"),
        ("calendar_created", "calendar.created"),
        ("calendar_updated", "calendar.updated"),
        ("calendar_deleted", "calendar.deleted"),
        ("risk_created", "risk.created"),
        ("risk_updated", "risk.updated"),
        ("risk_deleted", "risk.deleted"),
        ("sprint_created", "sprint.created"),
        ("sprint_updated", "sprint.updated"),
        ("sprint_deleted", "sprint.deleted"),
        ("sprint_activated", "sprint.started"),
        ("sprint_closed", "sprint.completed"),
        ("sprint_cancelled", "sprint.cancelled"),
        ("sprint_scope_changed", "sprint.scope_changed"),
        ("baseline_created", "baseline.created"),
        ("baseline_activated", "baseline.activated"),
        ("baseline_deleted", "baseline.deleted"),
        ("label_created", "label.created"),
        ("label_updated", "label.updated"),
        ("label_deleted", "label.deleted"),
        ("board_config_updated", "board.config_updated"),
        ("task_comment_created", "task.comment_created"),
        ("task_comment_updated", "task.comment_updated"),
        ("task_comment_deleted", "task.comment_deleted"),
        ("task_attachment_created", "task.attachment_created"),
        ("task_attachment_deleted", "task.attachment_deleted"),
        ("whiteboard_created", "whiteboard.created"),
        ("whiteboard_updated", "whiteboard.updated"),
        ("whiteboard_deleted", "whiteboard.deleted"),
        ("version_created", "version.created"),
        ("version_deleted", "version.deleted"),
        ("cpm_complete", "cpm.complete"),
        ("cpm_error", "cpm.error"),
        ("task_dates_updated", "task.dates_updated"),
        ("user_updated", "user.updated"),
        ("database_wiped", "database.wiped"),
        ("database_projects_wiped", "database.projects.wiped"),
        ("presence_join", "presence.join"),
        ("presence_leave", "presence.leave"),
    ];

    #[test]
    fn punt_names_cover_the_whole_catalog() {
        let catalog: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let table: Vec<&str> = PUNT.iter().map(|(c, _)| *c).collect();
        assert_eq!(table, catalog, "the table must list the catalog in order");
        for (canonical, punt) in PUNT {
            let t = EventType::parse(canonical).unwrap();
            assert_eq!(punt_type(t, &json!({"id": "x"})), *punt, "{canonical}");
        }
    }

    #[test]
    fn task_updated_is_a_move_when_board_position_changes() {
        for field in ["status", "column_id", "rank"] {
            let payload = json!({"id": "t", "changed_fields": ["name", field]});
            assert_eq!(punt_type(EventType::TaskUpdated, &payload), "ticket.moved");
        }
        let payload = json!({"id": "t", "changed_fields": ["name", "duration"]});
        assert_eq!(
            punt_type(EventType::TaskUpdated, &payload),
            "ticket.updated"
        );
        assert_eq!(
            punt_type(EventType::TaskUpdated, &json!({"id": "t"})),
            "ticket.updated"
        );
    }

    fn sample(seq: Option<i64>, tab: Option<&str>) -> Event {
        let task = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let project = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00aa);
        Event {
            stream: StreamKey::Project(project),
            seq,
            event_type: EventType::TaskUpdated,
            payload: json!({"id": task, "changed_fields": ["status"], "version": 3}),
            data: json!({"id": task, "name": "Pour \"slab\"\n", "status": "done"}),
            actor_id: None,
            tab_id: tab.map(str::to_owned),
            ts: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 5).unwrap(),
            project_id: Some(project),
            echo: None,
        }
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn pusher_frames_carry_the_log_shape_as_a_string_with_serial_and_stream() {
        let event = sample(Some(42), Some("tab-1"));
        let frame: Value = serde_json::from_slice(&Pusher.encode(&event, false).unwrap()).unwrap();
        assert_eq!(frame["event"], "task_updated");
        assert_eq!(
            frame["channel"],
            "private-project-01900000-0000-7000-8000-0000000000aa"
        );
        assert_eq!(frame["serial"], 42);
        assert_eq!(
            frame["stream_id"],
            "project:01900000-0000-7000-8000-0000000000aa"
        );
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["seq"], 42);
        assert_eq!(data["event_type"], "task_updated");
        assert_eq!(data["tab_id"], "tab-1");
        assert_eq!(data["payload"], event.payload);
        assert_eq!(data["data"], event.data);
        assert_eq!(data["timestamp"], "2026-03-01T12:30:05.000Z");
        assert!(data.get("actor_id").is_some());
        let mut system = event;
        system.stream = StreamKey::System;
        assert!(Pusher.encode(&system, false).is_none());
    }

    #[test]
    fn native_ws_frames_are_exact() {
        let live = NativeWs.encode(&sample(Some(42), None), false).unwrap();
        assert_eq!(
            text(live),
            r#"{"protocol_version":1,"event_type":"task_updated","payload":{"id":"01900000-0000-7000-8000-000000000001","changed_fields":["status"],"version":3},"seq":42}"#
        );
        let replayed = NativeWs
            .encode(&sample(Some(7), Some("tab-1")), true)
            .unwrap();
        assert_eq!(
            text(replayed),
            r#"{"protocol_version":1,"event_type":"task_updated","payload":{"id":"01900000-0000-7000-8000-000000000001","changed_fields":["status"],"version":3},"seq":7,"replayed":true,"tab_id":"tab-1"}"#
        );
        let mut presence = sample(None, None);
        presence.event_type = EventType::PresenceJoin;
        presence.payload = json!({"user_id": "u", "display_name": "Ada"});
        assert_eq!(
            text(NativeWs.encode(&presence, false).unwrap()),
            r#"{"protocol_version":1,"event_type":"presence_join","payload":{"user_id":"u","display_name":"Ada"},"seq":null}"#
        );
        assert_eq!(
            text(NativeWs.resync_required(1234)),
            r#"{"protocol_version":1,"event_type":"resync_required","payload":{"latest_seq":1234},"seq":null}"#
        );
    }

    #[test]
    fn an_echo_changes_no_native_or_sse_byte() {
        let mut echoed = sample(Some(42), Some("tab-9"));
        echoed.echo = Some(json!({"client": "client-1", "changes": {"tasks": {}}}));
        let plain = sample(Some(42), Some("tab-9"));
        for replayed in [false, true] {
            assert_eq!(
                NativeWs.encode(&echoed, replayed),
                NativeWs.encode(&plain, replayed)
            );
            assert_eq!(Sse.encode(&echoed, replayed), Sse.encode(&plain, replayed));
        }
    }

    #[test]
    fn sse_messages_are_exact() {
        let moved = Sse.encode(&sample(Some(42), Some("tab-9")), true).unwrap();
        assert_eq!(
            text(moved),
            "id: 42\ndata: {\"type\":\"ticket.moved\",\"data\":{\"id\":\"01900000-0000-7000-8000-000000000001\",\"name\":\"Pour \\\"slab\\\"\\n\",\"status\":\"done\"},\"tabId\":\"tab-9\",\"timestamp\":\"2026-03-01T12:30:05.000Z\"}\n\n"
        );
        let mut created = sample(Some(1), None);
        created.event_type = EventType::DependencyCreated;
        created.data = json!({"id": "d"});
        assert_eq!(
            text(Sse.encode(&created, false).unwrap()),
            "id: 1\ndata: {\"type\":\"dependency.created\",\"data\":{\"id\":\"d\"},\"tabId\":null,\"timestamp\":\"2026-03-01T12:30:05.000Z\"}\n\n"
        );
        let mut presence = sample(None, None);
        presence.event_type = EventType::PresenceLeave;
        presence.data = json!({"user_id": "u", "display_name": "Ada"});
        assert_eq!(
            text(Sse.encode(&presence, false).unwrap()),
            "data: {\"type\":\"presence.leave\",\"data\":{\"user_id\":\"u\",\"display_name\":\"Ada\"},\"tabId\":null,\"timestamp\":\"2026-03-01T12:30:05.000Z\"}\n\n"
        );
        assert_eq!(
            text(Sse.resync_required(9)),
            "data: {\"type\":\"resync_required\",\"data\":{\"latest_seq\":9}}\n\n"
        );
        assert_eq!(
            text(Sse::connected(Uuid::nil())),
            "data: {\"type\":\"connected\",\"userId\":\"00000000-0000-0000-0000-000000000000\"}\n\n"
        );
    }
}
