//! Which node computes a project's schedule, when several nodes share one database.
//!
//! Each node's scheduler is woken by the commits made on that node, so two nodes can be asked
//! to schedule one project at the same moment. Two rows of the settings table, both written
//! while holding the project's stream (so every node sees them change one at a time, by the
//! store's concurrency contract), keep that to one computation per change:
//!
//! - the **lease** (`schedule_lease:{project}`): the scheduler that holds it, until when. Only
//!   its holder computes the project; the others try again later. It expires, so a node that
//!   dies while computing holds nobody up for longer than the lease.
//! - the **mark** (`schedule_through:{project}`): the project seq the last written schedule was
//!   computed from. A scheduler that gets the lease for a change at or below it has nothing to
//!   do (another node's computation already included the change), and a write computed from
//!   an older state than the mark is dropped, so a slow node never overwrites newer results.
//!
//! A node alone on its database uses neither: its scheduler sees every commit of its projects.

use crate::tx::Tx;
use crate::{Domain, DomainResult, OrApi};
use proto::StreamKey;
use std::time::Duration;
use store::{Queries, Timestamp, format_ts};
use uuid::Uuid;

fn lease_key(project_id: Uuid) -> String {
    format!("schedule_lease:{project_id}")
}

fn mark_key(project_id: Uuid) -> String {
    format!("schedule_through:{project_id}")
}

/// A lease row: `holder until`, or empty when released.
fn parse_lease(text: &str) -> Option<(Uuid, Timestamp)> {
    let (holder, until) = text.split_once(' ')?;
    let until = chrono::DateTime::parse_from_rfc3339(until).ok()?;
    Some((
        Uuid::parse_str(holder).ok()?,
        until.with_timezone(&chrono::Utc),
    ))
}

/// The project seq the last written schedule was computed from (0 when none was marked).
pub(crate) async fn scheduled_through(
    ops: &mut dyn Queries,
    project_id: Uuid,
) -> DomainResult<i64> {
    let text = ops.get_setting(&mark_key(project_id)).await.or_api()?;
    Ok(text.and_then(|t| t.parse().ok()).unwrap_or(0))
}

/// Sets the mark to `seq`: call it holding the project's stream, after checking that the mark
/// is below `seq`, in the transaction that writes the schedule computed from `seq`.
pub(crate) async fn mark_scheduled_through(
    ops: &mut dyn Queries,
    project_id: Uuid,
    seq: i64,
) -> DomainResult<()> {
    ops.put_setting(&mark_key(project_id), &seq.to_string())
        .await
        .or_api()
}

impl Domain {
    /// Takes (or renews) the lease on computing `project_id` for `holder`, for `ttl`. `Some`
    /// with the project's mark when taken; `None` while another scheduler holds it.
    pub async fn take_schedule_lease(
        &self,
        project_id: Uuid,
        holder: Uuid,
        ttl: Duration,
    ) -> DomainResult<Option<i64>> {
        let mut tx = Tx::begin(self, None).await?;
        tx.hold(StreamKey::Project(project_id)).await?;
        let now = tx.now;
        let key = lease_key(project_id);
        let held = tx.ops().get_setting(&key).await.or_api()?;
        if let Some((other, until)) = held.as_deref().and_then(parse_lease)
            && other != holder
            && until > now
        {
            return Ok(None);
        }
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let until = now.checked_add_signed(ttl).unwrap_or(now);
        tx.ops()
            .put_setting(&key, &format!("{holder} {}", format_ts(until)))
            .await
            .or_api()?;
        let through = scheduled_through(tx.ops(), project_id).await?;
        tx.commit().await?;
        Ok(Some(through))
    }

    /// Gives the lease back, if `holder` still has it.
    pub async fn end_schedule_lease(&self, project_id: Uuid, holder: Uuid) -> DomainResult<()> {
        let mut tx = Tx::begin(self, None).await?;
        tx.hold(StreamKey::Project(project_id)).await?;
        let key = lease_key(project_id);
        let held = tx.ops().get_setting(&key).await.or_api()?;
        if held
            .as_deref()
            .and_then(parse_lease)
            .is_some_and(|(h, _)| h == holder)
        {
            tx.ops().put_setting(&key, "").await.or_api()?;
            tx.commit().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_row_reads_back_and_anything_else_is_no_lease() {
        let holder = Uuid::from_u128(7);
        let until = store::now();
        let text = format!("{holder} {}", format_ts(until));
        let (h, u) = parse_lease(&text).expect("a lease");
        assert_eq!(h, holder);
        assert_eq!(format_ts(u), format_ts(until));
        assert_eq!(parse_lease(""), None);
        assert_eq!(parse_lease("not-a-uuid 2026-01-01T00:00:00Z"), None);
        assert_eq!(parse_lease(&format!("{holder} yesterday")), None);
    }
}
