//! Bryntum's `request_version_autosave`: of all the clients of a project, one at a time may
//! save a version. The last grant is a setting, written in the transaction that decides, so
//! every node of a cluster sees the same grants.

use crate::access::project_role;
use crate::{Actor, Domain, DomainResult, OrApi};
use chrono::DateTime;
use proto::{Role, StreamKey};
use std::time::Duration;
use store::{Queries, Timestamp, format_ts};
use uuid::Uuid;

/// One autosave permission per project per this interval.
pub const AUTOSAVE_INTERVAL: Duration = Duration::from_secs(60);

fn autosave_key(project_id: Uuid) -> String {
    format!("bryntum.autosave.{project_id}")
}

/// Whether a grant may follow the one stored. A grant stamped further in the future than one
/// interval comes from a clock that was wrong (or went back); it must not block the project
/// for longer than an interval.
fn may_grant(last: Option<Timestamp>, now: Timestamp) -> bool {
    let Some(last) = last else {
        return true;
    };
    let interval = chrono::TimeDelta::from_std(AUTOSAVE_INTERVAL).unwrap_or(chrono::TimeDelta::MAX);
    let since = now.signed_duration_since(last);
    since >= interval || since < -interval
}

async fn last_grant(ops: &mut dyn Queries, project_id: Uuid) -> DomainResult<Option<Timestamp>> {
    let text = ops.get_setting(&autosave_key(project_id)).await.or_api()?;
    // An unreadable stamp counts as no grant: the worst case is one extra autosave.
    Ok(text
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.to_utc()))
}

impl Domain {
    /// Grants the actor the project's autosave at `now` if nobody got it in the last
    /// [`AUTOSAVE_INTERVAL`]: `true` for exactly one of any number of concurrent callers.
    /// Viewers never get it (`false`); a non-member gets 404.
    pub async fn grant_autosave(
        &self,
        actor: &Actor,
        project_id: Uuid,
        now: Timestamp,
    ) -> DomainResult<bool> {
        // Most requests come within the interval: they are answered from a read, without
        // queueing for the writer.
        {
            let mut ops = self.store.read().await.or_api()?;
            let (_, role) = project_role(&mut *ops, project_id, actor).await?;
            if role < Role::Member || !may_grant(last_grant(&mut *ops, project_id).await?, now) {
                return Ok(false);
            }
        }
        let mut tx = self.store.write().await.or_api()?;
        // Held so that on PostgreSQL a second node's grant waits and then sees this one.
        tx.lock_stream(StreamKey::Project(project_id))
            .await
            .or_api()?;
        let (_, role) = project_role(&mut *tx, project_id, actor).await?;
        if role < Role::Member || !may_grant(last_grant(&mut *tx, project_id).await?, now) {
            return Ok(false);
        }
        tx.put_setting(&autosave_key(project_id), &format_ts(now))
            .await
            .or_api()?;
        tx.commit().await.or_api()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grant_per_interval_and_a_wrong_clock_blocks_no_longer() {
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        assert!(may_grant(None, at(0)));
        assert!(!may_grant(Some(at(0)), at(0)));
        assert!(!may_grant(Some(at(0)), at(59)));
        assert!(may_grant(Some(at(0)), at(60)));
        assert!(
            !may_grant(Some(at(30)), at(0)),
            "a little ahead still counts"
        );
        assert!(may_grant(Some(at(61)), at(0)), "far ahead is a wrong clock");
    }
}
