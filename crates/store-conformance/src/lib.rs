//! The behaviour every store backend must show.
//!
//! [`cases`] holds one async function per behaviour; each takes a fresh, empty store and
//! panics with a plain message when the backend misbehaves. A backend's test file runs them all
//! with one line, [`conformance_suite!`]`(fresh)`, where `fresh` is an `async fn() -> Fresh`
//! making an empty store of its own (a temporary file, a database made for the test): a new
//! case reaches every backend without any backend listing it.
//!
//! This crate is a dev-dependency of the backends only; nothing of it is compiled into the
//! server.

pub mod cases;

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use store::Store;

/// A fresh, empty store for one case, and what to do once the case is over (remove the
/// temporary file, drop the database).
pub struct Fresh {
    pub store: Arc<dyn Store>,
    cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Fresh {
    /// A store whose cleanup is `cleanup`, awaited after the store is closed, whether the case
    /// passed or not.
    pub fn new(store: Arc<dyn Store>, cleanup: impl Future<Output = ()> + Send + 'static) -> Fresh {
        Fresh {
            store,
            cleanup: Some(Box::pin(cleanup)),
        }
    }
}

/// Runs one case on `fresh`, closes the store, cleans up, and then fails if the case did.
pub async fn run<F, Fut>(fresh: Fresh, case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let outcome = AssertUnwindSafe(case(fresh.store.clone()))
        .catch_unwind()
        .await;
    fresh.store.close().await;
    if let Some(cleanup) = fresh.cleanup {
        cleanup.await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Expands to one `#[tokio::test]` per case of [`cases`], each on a store from `$fresh`
/// (an `async fn() -> Fresh`). The backend's tests need `tokio` (with `macros` and
/// `rt-multi-thread`) among their dev-dependencies.
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::conformance_suite!(@current $fresh;
            settings_are_kept_and_replaced,
            users_are_kept_and_found_by_login,
            sessions_are_revoked_once,
            deleting_a_user_takes_their_sessions_and_memberships,
            tickets_expire_and_are_purged,
            seqs_are_gap_free_per_stream,
            a_seq_never_goes_backwards_after_deletes,
            raising_a_seq_never_lowers_it,
            ephemeral_events_are_never_logged,
            events_appended_at_once_take_the_seqs_of_one_at_a_time,
            rollback_leaves_nothing,
            snapshots_are_consistent,
            a_dropped_snapshot_leaves_its_connection_current,
            unique_rules_are_conflicts,
            projects_and_memberships_are_kept,
            deleting_a_project_takes_its_rows,
            records_keep_bodies_and_references,
            records_are_listed_by_collection_in_pages,
            joined_reads_match_separate_reads,
            read_handles_refuse_writes,
            a_closed_store_refuses_work,
            events_carry_their_echo,
            phantom_ids_are_kept_bounded,
            nodes_join_beat_expire_and_leave,
            app_channel_serials_are_per_channel,
            app_channel_reads_page_after_a_serial,
            app_channels_keep_their_last_events,
            app_channel_events_expire,
            a_rolled_back_app_append_leaves_nothing,
            idle_app_channels_are_forgotten_in_batches,
            deleting_app_channels_renews_their_streams,
            log_bounds_page_through_every_stream,
            pruning_keeps_an_unbroken_newest_run,
            the_nth_newest_event_is_counted_across_holes,
            whiteboard_updates_are_ordered_per_board,
            compacting_a_whiteboard_keeps_later_updates,
            whiteboard_snapshots_are_kept_and_go_with_the_board,
            webhooks_are_kept_changed_and_deleted,
            a_webhook_lease_has_one_owner,
            due_webhooks_are_behind_their_stream,
            webhook_deliveries_are_one_per_seq_and_go_with_the_project
        );
        $crate::conformance_suite!(@multi $fresh;
            concurrent_writers_keep_seqs_consecutive,
            tickets_are_consumed_once,
            a_held_stream_makes_the_next_holder_wait,
            holders_of_a_stream_never_write_over_a_newer_version,
            whole_collections_read_concurrently,
            concurrent_joins_exclude_each_other,
            concurrent_app_appends_keep_serials_gap_free,
            concurrent_whiteboard_appends_keep_seqs_gap_free,
            concurrent_lease_takers_get_one_owner
        );
    };
    (@current $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                $crate::run($fresh().await, $crate::cases::$case).await;
            }
        )*
    };
    (@multi $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::run($fresh().await, $crate::cases::$case).await;
            }
        )*
    };
}
