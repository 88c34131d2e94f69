//! Durability (CONTRACT §12): `--durability full` is the default and commits synchronously;
//! after a crash that may have lost the end of the log in the fast mode, every stream's seqs
//! skip ahead, so clients that saw lost events are told `resync_required` instead of getting
//! new events under seqs they already hold; restarts that lost nothing skip nothing.
//!
//! The crash is simulated with `liveplan-testkit`'s `crash` module: the store is put back to an
//! image taken between two commits, and on SQLite the boot id file the server reads (a test
//! seam, `Config::boot_id_file`) says whether the operating system restarted.

use liveplan_server::Config;
use liveplan_testkit::follow::*;
use liveplan_testkit::*;
use std::path::{Path, PathBuf};
use store::{Durability, LOST_TAIL_SKIP, STREAM_EPOCH_SETTING};
use uuid::Uuid;

/// What the store reports for its commits' synchronous setting.
async fn synchronous(server: &TestServer) -> String {
    server
        .state()
        .domain
        .store
        .synchronous_setting()
        .await
        .unwrap()
}

async fn epoch(server: &TestServer) -> Option<String> {
    let mut read = server.state().domain.store.read().await.unwrap();
    read.get_setting(STREAM_EPOCH_SETTING).await.unwrap()
}

fn fast(boot_id_file: PathBuf) -> impl FnOnce(&mut Config) {
    move |config: &mut Config| {
        relax_rates(config);
        config.durability = Durability::Fast;
        config.boot_id_file = Some(boot_id_file);
    }
}

fn boot(file: &Path, id: &str) {
    std::fs::write(file, format!("{id}\n")).unwrap();
}

/// Reads `conn` until it has every event after `since` up to `last`, one by one.
async fn read_to(conn: &mut Conn, since: i64, last: i64) {
    let mut seen = since;
    for _ in 0..1000 {
        if seen == last {
            return;
        }
        match conn.read().await {
            Read::Event(seq) => {
                assert_eq!(seq, seen + 1, "in order, no gap");
                seen = seq;
            }
            Read::Other => {}
            Read::Resync(at) => panic!("unexpected resync to {at} at {seen}"),
            Read::Closed => panic!("closed at {seen}"),
        }
    }
    panic!("read {seen}, not {last}");
}

/// The first thing a client resuming after `since` is told (other frames skipped).
async fn first_word(conn: &mut Conn) -> Read {
    for _ in 0..10 {
        match conn.read().await {
            Read::Other => {}
            read => return read,
        }
    }
    panic!("no event and no resync");
}

/// A native WebSocket (`sse == false`) or an SSE client of `project` resuming after `since`.
async fn client(server: &TestServer, token: &str, project: Uuid, sse: bool, since: i64) -> Conn {
    Conn::open(server, token, project, sse, since).await
}

#[tokio::test]
async fn full_durability_is_the_default_and_fast_is_asked_for() {
    let mut server = TestServer::start().await;
    let (full, fast_value) = if server.is_postgres() {
        ("on", "off")
    } else {
        // PRAGMA synchronous: 1 is NORMAL; the full mode syncs the log itself before it
        // acknowledges (a group sync), the fast one never.
        ("1 + group sync", "1")
    };
    assert_eq!(Config::new(PathBuf::new()).durability, Durability::Full);
    assert_eq!(synchronous(&server).await, full);
    let dir = tempfile::tempdir().unwrap();
    boot(&dir.path().join("boot_id"), "boot-a");
    server.stop().await;
    server
        .start_again_with(fast(dir.path().join("boot_id")))
        .await;
    assert_eq!(synchronous(&server).await, fast_value);
    server.stop().await;
    server.start_again_with(relax_rates).await;
    assert_eq!(synchronous(&server).await, full);
}

/// The fast mode loses the end of the log in a crash (of the operating system on SQLite, of
/// the database server on PostgreSQL) after a WebSocket and an SSE client saw it. At the next
/// start every stream skips ahead: clients resuming from a lost seq or from the durable head
/// are told `resync_required`, never handed the events written next under seqs they saw.
#[tokio::test]
async fn a_lost_tail_makes_resuming_clients_resync() {
    let dir = tempfile::tempdir().unwrap();
    let boot_file = dir.path().join("boot_id");
    boot(&boot_file, "boot-a");
    let mut server = TestServer::start_with(fast(boot_file.clone())).await;
    let (project, token) = project_with_member(&server, "crash").await;
    for i in 0..3 {
        server
            .task(&server.admin, project, &format!("kept {i}"))
            .await;
    }
    let durable = server.log_seqs(project).await;
    let durable_head = *durable.last().unwrap();
    // What survives the crash: everything up to here.
    let image = server.disk_image().await;

    let mut ws = client(&server, &token, project, false, durable_head).await;
    let mut sse = client(&server, &token, project, true, durable_head).await;
    for i in 0..4 {
        server
            .task(&server.admin, project, &format!("lost {i}"))
            .await;
    }
    let seen_head = durable_head + 4;
    assert_eq!(*server.log_seqs(project).await.last().unwrap(), seen_head);
    read_to(&mut ws, durable_head, seen_head).await;
    read_to(&mut sse, durable_head, seen_head).await;
    drop((ws, sse));

    server.stop().await;
    server.crash_back_to(image).await;
    boot(&boot_file, "boot-b");
    server.start_again_with(fast(boot_file.clone())).await;

    // The log lost the tail; the counter moved on past anything that could have been lost.
    assert_eq!(server.log_seqs(project).await, durable);
    assert_eq!(epoch(&server).await.as_deref(), Some("1"));
    for i in 0..2 {
        server
            .task(&server.admin, project, &format!("new {i}"))
            .await;
    }
    let new_head = durable_head + LOST_TAIL_SKIP + 2;
    let log = server.log_seqs(project).await;
    assert_eq!(
        log[durable.len()..],
        [durable_head + LOST_TAIL_SKIP + 1, new_head]
    );

    // Clients at a lost seq, at the durable head, and one that saw half the lost tail.
    for since in [seen_head, durable_head, durable_head + 2] {
        for sse in [false, true] {
            let mut conn = client(&server, &token, project, sse, since).await;
            match first_word(&mut conn).await {
                Read::Resync(latest) => assert_eq!(latest, new_head, "since {since}, sse {sse}"),
                Read::Event(seq) => panic!("since {since} (sse {sse}) was handed seq {seq}"),
                Read::Closed => panic!("closed"),
                Read::Other => unreachable!(),
            }
        }
    }
    // A client that resyncs (reads the plan and its seq) resumes from there as usual.
    let mut conn = client(&server, &token, project, false, new_head).await;
    server.task(&server.admin, project, "after resync").await;
    read_to(&mut conn, new_head, new_head + 1).await;
}

/// Restarts in the fast mode that lost nothing skip nothing: a clean stop, and on SQLite a
/// killed process under the same boot (the operating system kept what it had been given).
/// A full run's acknowledged writes survive a crash of the operating system.
#[tokio::test]
async fn restarts_that_lost_nothing_skip_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let boot_file = dir.path().join("boot_id");
    boot(&boot_file, "boot-a");
    let mut server = TestServer::start_with(fast(boot_file.clone())).await;
    let (project, token) = project_with_member(&server, "calm").await;
    server.task(&server.admin, project, "one").await;
    let mut head = *server.log_seqs(project).await.last().unwrap();

    // A clean stop, then the same boot and then another boot: nothing was at risk.
    for boot_id in ["boot-a", "boot-b"] {
        server.stop().await;
        boot(&boot_file, boot_id);
        server.start_again_with(fast(boot_file.clone())).await;
        let mut ws = client(&server, &token, project, false, head).await;
        let mut sse = client(&server, &token, project, true, head).await;
        server.task(&server.admin, project, boot_id).await;
        read_to(&mut ws, head, head + 1).await;
        read_to(&mut sse, head, head + 1).await;
        head += 1;
        assert_eq!(epoch(&server).await, None);
    }

    if server.is_postgres() {
        // A stop of a node is always clean for PostgreSQL: nothing is held by the node.
        return;
    }
    // The process dies (its last commits are in the operating system's hands, not yet on
    // disk) and the system keeps running: the same boot, no skip.
    let image = server.disk_image().await;
    server.stop().await;
    server.crash_back_to(image).await;
    server.start_again_with(fast(boot_file.clone())).await;
    assert_eq!(epoch(&server).await, None);
    let mut ws = client(&server, &token, project, false, head).await;
    server.task(&server.admin, project, "after the kill").await;
    read_to(&mut ws, head, head + 1).await;
    head += 1;

    // A run in full durability acknowledges only what is synced, so what it acknowledged
    // survives a crash of the operating system: the image, taken between requests, holds only
    // acknowledged commits, which is what the group sync had put on disk. Readers may have
    // seen a commit in the moment before its sync, so an unclean end under another boot
    // still skips, and a resuming client resyncs.
    server.stop().await;
    server
        .start_again_with(relax_rates_with_boot(boot_file.clone()))
        .await;
    server.task(&server.admin, project, "in the full run").await;
    head += 1;
    let image = server.disk_image().await;
    server.stop().await;
    server.crash_back_to(image).await;
    boot(&boot_file, "boot-c");
    server.start_again_with(fast(boot_file.clone())).await;
    assert_eq!(*server.log_seqs(project).await.last().unwrap(), head);
    assert_eq!(epoch(&server).await.as_deref(), Some("1"));
    server
        .task(&server.admin, project, "after the full run")
        .await;
    let mut sse = client(&server, &token, project, true, head).await;
    match first_word(&mut sse).await {
        Read::Resync(latest) => assert_eq!(latest, head + LOST_TAIL_SKIP + 1),
        Read::Event(seq) => panic!("handed seq {seq} after the full run's crash"),
        Read::Closed => panic!("closed"),
        Read::Other => unreachable!(),
    }
}

fn relax_rates_with_boot(boot_id_file: PathBuf) -> impl FnOnce(&mut Config) {
    move |config: &mut Config| {
        relax_rates(config);
        config.boot_id_file = Some(boot_id_file);
    }
}
