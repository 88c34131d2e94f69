//! System administration: the project log, export, import and wipes.

use crate::access::{project_role, require_system_admin};
use crate::projects::delete_project_in;
use crate::transfer::ExportDocument;
use crate::tx::Tx;
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{Event, EventType, StreamKey};
use serde_json::{Value, json};
use store::format_ts;
use uuid::Uuid;

pub use crate::transfer::EXPORT_FORMAT;

pub fn log_entry(event: &Event) -> Value {
    json!({
        "seq": event.seq,
        "event_type": event.event_type,
        "payload": event.payload,
        "data": event.data,
        "actor_id": event.actor_id,
        "tab_id": event.tab_id,
        "ts": format_ts(event.ts),
    })
}

impl Domain {
    pub async fn read_log(
        &self,
        actor: &Actor,
        project_id: Uuid,
        since: i64,
        limit: u32,
    ) -> DomainResult<Value> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        let stream = StreamKey::Project(project_id);
        // 0 asks for no events (the head only); more than a page is a page.
        let limit = limit.min(self.limits.max_log_page);
        let events = if limit == 0 {
            Vec::new()
        } else {
            ops.read_events(stream, since.max(0), limit)
                .await
                .or_api()?
        };
        let latest = ops.latest_seq(stream).await.or_api()?;
        // The oldest seq the log still holds (after an import or a wipe it starts past 1), so
        // a reader can tell a position the log cannot resume from, as the live transports do
        // with `resync_required`.
        let first = match events.first() {
            Some(first) if since <= 0 => first.seq,
            _ => ops
                .read_events(stream, 0, 1)
                .await
                .or_api()?
                .first()
                .and_then(|event| event.seq),
        }
        .unwrap_or(latest + 1);
        // A negative position is none the log can resume from, as on the live transports.
        let resync_required = since < 0 || (since < latest && since + 1 < first);
        Ok(json!({
            "events": events.iter().map(log_entry).collect::<Vec<_>>(),
            "latest_seq": latest,
            "first_seq": first,
            "resync_required": resync_required,
        }))
    }

    /// `GET /api/v1/admin/export`, without attachment bytes (the server adds them).
    pub async fn export(&self, actor: &Actor) -> DomainResult<ExportDocument> {
        require_system_admin(actor)?;
        self.export_all().await
    }

    /// Removes every project (`DELETE /api/v1/admin/projects`).
    pub async fn wipe_projects(&self, actor: &Actor) -> DomainResult<Value> {
        require_system_admin(actor)?;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let projects = tx.ops().list_projects().await.or_api()?;
        for project in &projects {
            tx.hold(StreamKey::Project(project.id)).await?;
            tx.ops()
                .delete_stream_events(StreamKey::Project(project.id))
                .await
                .or_api()?;
            tx.ops().delete_project(project.id).await.or_api()?;
        }
        let summary = json!({ "projects": projects.len() });
        tx.emit(
            StreamKey::System,
            EventType::DatabaseProjectsWiped,
            summary.clone(),
            summary.clone(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Deletes one project as part of administration, with its events.
    pub async fn admin_delete_project(&self, actor: &Actor, project_id: Uuid) -> DomainResult<()> {
        require_system_admin(actor)?;
        // The project's stream, then the system stream: see `Domain::retrying`.
        self.retrying(|| async move {
            let mut tx = Tx::begin(self, Some(actor)).await?;
            delete_project_in(&mut tx, project_id).await?;
            tx.commit().await
        })
        .await?;
        Ok(())
    }
}
