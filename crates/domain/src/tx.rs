//! A write transaction that remembers the events it appended, so the listener receives exactly
//! the events of what committed, after the commit.

use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, Event, EventType, Role, StreamKey};
use serde_json::Value;
use std::sync::Arc;
use store::{NewEvent, ProjectRow, Queries, RecordRow, Timestamp, WriteTx};
use uuid::Uuid;

pub struct Tx<'d> {
    domain: &'d Domain,
    inner: Box<dyn WriteTx>,
    events: Vec<Event>,
    pub now: Timestamp,
    pub actor_id: Option<Uuid>,
    pub tab_id: Option<String>,
    /// Rides on the next event appended to a project stream, then is gone (see
    /// [`proto::Event::echo`]).
    echo: Option<Value>,
}

impl<'d> Tx<'d> {
    pub async fn begin(domain: &'d Domain, actor: Option<&Actor>) -> DomainResult<Tx<'d>> {
        Ok(Tx {
            domain,
            inner: domain.store.write().await.or_api()?,
            events: Vec::new(),
            now: store::now(),
            actor_id: actor.map(|a| a.user_id),
            tab_id: actor.and_then(|a| a.tab_id.clone()),
            echo: None,
        })
    }

    /// Gives the first project event this transaction appends from now on the echo for the
    /// writer's client.
    pub fn set_echo(&mut self, echo: Option<Value>) {
        self.echo = echo;
    }

    pub fn ops(&mut self) -> &mut dyn Queries {
        &mut *self.inner
    }

    /// Holds `stream` for the rest of the transaction. Every write transaction holds the stream
    /// of what it changes before it reads what it decides on (a version for If-Match, a rule
    /// across records, whether the project still exists): writers on other nodes then wait,
    /// instead of both deciding on the same state and one losing the other's change (the
    /// store's concurrency contract, "Per record"). Holding it first also gives every writer
    /// of a project one lock order, stream before rows, so they cannot deadlock.
    pub async fn hold(&mut self, stream: StreamKey) -> DomainResult<()> {
        self.inner.lock_stream(stream).await.or_api()
    }

    /// The actor's role in the project, read while holding the project's stream ([`Tx::hold`]):
    /// the first thing a write transaction on a project does.
    pub async fn project_role(
        &mut self,
        project_id: Uuid,
        actor: &Actor,
    ) -> DomainResult<(ProjectRow, Role)> {
        self.hold(StreamKey::Project(project_id)).await?;
        crate::access::project_role(&mut *self.inner, project_id, actor).await
    }

    /// [`Tx::project_role`] and the record `record_id` (whatever its project and collection:
    /// the caller checks), read in one go once the project's stream is held: the first
    /// thing a change of a record does.
    pub async fn project_role_and_record(
        &mut self,
        project_id: Uuid,
        actor: &Actor,
        record_id: Uuid,
    ) -> DomainResult<(ProjectRow, Role, Option<RecordRow>)> {
        self.hold(StreamKey::Project(project_id)).await?;
        let found = self
            .inner
            .get_project_with_membership_and_record(project_id, actor.user_id, record_id)
            .await
            .or_api()?;
        let (project, membership, record) = found.ok_or_else(|| ApiError::not_found("project"))?;
        Ok((project, crate::access::role_in(membership)?, record))
    }

    pub async fn emit(
        &mut self,
        stream: StreamKey,
        event_type: EventType,
        payload: Value,
        data: Value,
        project_id: Option<Uuid>,
    ) -> DomainResult<()> {
        self.emit_all(vec![(stream, event_type, payload, data, project_id)])
            .await
    }

    /// [`Tx::emit`] for each of `events` (stream, type, payload, data, project) in order, in
    /// fewer statements where the store can (a run of one stream's events takes its seqs at
    /// once).
    pub async fn emit_all(
        &mut self,
        events: Vec<(StreamKey, EventType, Value, Value, Option<Uuid>)>,
    ) -> DomainResult<()> {
        let mut new = Vec::with_capacity(events.len());
        for (stream, event_type, payload, data, project_id) in events {
            let echo = match stream {
                StreamKey::Project(_) => self.echo.take(),
                _ => None,
            };
            new.push(NewEvent {
                stream,
                event_type,
                payload,
                data,
                actor_id: self.actor_id,
                tab_id: self.tab_id.clone(),
                ts: self.now,
                project_id,
                echo,
            });
        }
        let appended = self.inner.append_events(new).await.or_api()?;
        self.events.extend(appended);
        Ok(())
    }

    /// Commits, then hands the events to the listener in commit order (the store's
    /// `commit_then` sees to it), in the full durability only once the commit is on disk, so
    /// the listener sees every stream's events in order and never one a crash could lose.
    /// Returns them too.
    pub async fn commit(self) -> DomainResult<Vec<Event>> {
        let Tx {
            domain,
            inner,
            events,
            ..
        } = self;
        if events.is_empty() {
            inner.commit().await.or_api()?;
            return Ok(events);
        }
        // On a task of its own: once COMMIT ran, the wait for the sync and the hand-over to
        // the listener must finish even if the request that wrote is dropped meanwhile, or
        // the subscribers would not see these events until the stream's next one.
        let listener = Arc::clone(&domain.listener);
        let committing = tokio::spawn(async move {
            let outcome = inner
                .commit_then(Box::new(|| listener.committed(&events)))
                .await;
            (outcome, events)
        });
        let (outcome, events) = committing.await.map_err(|_| ApiError::internal())?;
        outcome.or_api()?;
        Ok(events)
    }
}
