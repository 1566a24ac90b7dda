//! `copy-store --from URL --to URL`: copies registrations and room history from one store
//! to another (SQLite to PostgreSQL, PostgreSQL to Firestore, …).
//!
//! The source is only read. The target must be empty, so a copy never mixes with data
//! already there, and a copy that failed half-way is started again on a fresh target.
//! The source must hold no active room: a room is live state of the server that runs it,
//! and ends (into history) when that server stops or, after a crash, at its next start.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use signal_core::store::{Store, StoreError};

/// Rows read per page.
const PAGE: u32 = 500;
/// Writes in flight at once (each row is its own transaction on the target).
const IN_FLIGHT: usize = 16;

/// What a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// `registered_clients` rows.
    pub clients: u64,
    /// `room_created` rows.
    pub rooms_created: u64,
    /// `terminated_rooms` rows.
    pub rooms_terminated: u64,
    /// `client_in_terminated_room` rows.
    pub memberships: u64,
}

/// Why a copy did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source still has live rooms.
    #[error(
        "the source holds {0} active room(s): stop the server that uses it first (its rooms \
         end when it stops, or at its next start after a crash), then copy"
    )]
    SourceBusy(usize),
    /// The target already holds data.
    #[error("the target is not empty ({0}): copy into an empty store")]
    TargetNotEmpty(String),
    /// Reading the source failed.
    #[error("reading the source: {0}")]
    Source(StoreError),
    /// Writing the target failed.
    #[error("writing the target: {0}")]
    Target(StoreError),
}

/// Copies registrations and history from `from` to `to`.
pub async fn copy_store(
    from: &Arc<dyn Store>,
    to: &Arc<dyn Store>,
) -> Result<CopyReport, CopyError> {
    let active = from.active_rooms().await.map_err(CopyError::Source)?;
    if !active.is_empty() {
        return Err(CopyError::SourceBusy(active.len()));
    }
    let target_clients = to.count_clients().await.map_err(CopyError::Target)?;
    if target_clients > 0 {
        return Err(CopyError::TargetNotEmpty(format!(
            "{target_clients} registered client(s)"
        )));
    }
    if !to
        .history_room_ids(None, 1)
        .await
        .map_err(CopyError::Target)?
        .is_empty()
        || !to
            .active_rooms()
            .await
            .map_err(CopyError::Target)?
            .is_empty()
    {
        return Err(CopyError::TargetNotEmpty("room history".into()));
    }

    let mut report = CopyReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = from
            .export_clients(after.as_deref(), PAGE)
            .await
            .map_err(CopyError::Source)?;
        let Some(last) = page.last() else { break };
        after = Some(last.client_id.clone());
        report.clients += page.len() as u64;
        stream::iter(page.iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |c| async move {
                to.register_client(c, &[]).await.map_err(CopyError::Target)
            })
            .await?;
    }

    let mut after: Option<String> = None;
    loop {
        let rooms = from
            .history_room_ids(after.as_deref(), PAGE)
            .await
            .map_err(CopyError::Source)?;
        let Some(last) = rooms.last() else { break };
        after = Some(last.clone());
        let counts: Vec<CopyReport> = stream::iter(rooms.iter())
            .map(|room_id| copy_room(from, to, room_id))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        for c in counts {
            report.rooms_created += c.rooms_created;
            report.rooms_terminated += c.rooms_terminated;
            report.memberships += c.memberships;
        }
    }
    Ok(report)
}

/// Copies one room id's history, in the order it was written: creations, memberships
/// that ended, terminations.
async fn copy_room(
    from: &Arc<dyn Store>,
    to: &Arc<dyn Store>,
    room_id: &str,
) -> Result<CopyReport, CopyError> {
    let created = from
        .room_created(room_id)
        .await
        .map_err(CopyError::Source)?;
    let members = from
        .member_history(room_id)
        .await
        .map_err(CopyError::Source)?;
    let ended = from
        .terminated_rooms(room_id)
        .await
        .map_err(CopyError::Source)?;
    for c in &created {
        to.import_room_created(c).await.map_err(CopyError::Target)?;
    }
    // With no active room of that id on the target, these only append history.
    for m in &members {
        to.remove_member(m, &[]).await.map_err(CopyError::Target)?;
    }
    for t in &ended {
        to.terminate_room(t, &[], &[])
            .await
            .map_err(CopyError::Target)?;
    }
    Ok(CopyReport {
        clients: 0,
        rooms_created: created.len() as u64,
        rooms_terminated: ended.len() as u64,
        memberships: members.len() as u64,
    })
}
