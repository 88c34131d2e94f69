//! The role check the native WebSocket and SSE handshakes share (a leaf, so the dialects do not
//! import their parent module, which routes them).

use crate::app::AppState;
use domain::access::project_role;
use domain::{Actor, OrApi};
use proto::{ApiError, ErrorCode, Role};
use uuid::Uuid;

/// The caller's role in a project, `None` when the project does not exist for them.
pub(crate) async fn role_in(
    state: &AppState,
    project_id: Uuid,
    actor: &Actor,
) -> Result<Option<Role>, ApiError> {
    let mut ops = state.domain.store.read().await.or_api()?;
    match project_role(&mut *ops, project_id, actor).await {
        Ok((_, role)) => Ok(Some(role)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
