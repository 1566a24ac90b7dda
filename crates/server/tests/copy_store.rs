//! `signal-manager-service copy-store --from URL --to URL`, as an operator moving a
//! SQLite deployment to PostgreSQL would run it: registrations and history arrive, the
//! server on the new store accepts the old registrations, and the command refuses a
//! target that holds data or a source with live rooms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::pg::PgServer;
use common::{TestServer, http_get};
use signal_core::store::Store;
use signal_store_postgres::{PostgresOptions, PostgresStore};
use signal_store_sqlite::{SqliteOptions, SqliteStore};

fn copy_store(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .args(["copy-store", "--from", from, "--to", to])
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ids<T>(rows: &[T], f: impl Fn(&T) -> String) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(f).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgresql() {
    // A deployment on SQLite: two registrations, a room that lived and ended.
    let mut s = TestServer::start().await;
    let sqlite_url = format!("sqlite://{}", s.dir.path().join("signal.db").display());
    let a = s.connected("alice").await;
    a.register("alice-registered-secret").await.unwrap();
    let b = s.registered("bob").await;
    a.create_room("alice-registered-secret", Some("moving"), Some("v=0"))
        .await
        .unwrap();
    b.join_room(&common::token("bob"), "moving").await.unwrap();
    drop(b);
    drop(a);
    // Stopped before the copy, as the command asks.
    s.running.take().unwrap().shutdown().await;

    let db = PgServer::start().await;
    let pg_url = db.fresh_database().await;
    let out = copy_store(&sqlite_url, &pg_url);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "copied 2 registered clients, 1 room creations, 1 room terminations and 2 memberships"
        ),
        "{said}"
    );

    // What arrived is what was there.
    let source = SqliteStore::open(&sqlite_url, SqliteOptions::default())
        .await
        .unwrap();
    let target = PostgresStore::open(&pg_url, PostgresOptions::default())
        .await
        .unwrap();
    for client in ["alice", "bob"] {
        let (a, b) = (
            source.get_client(client).await.unwrap().unwrap(),
            target.get_client(client).await.unwrap().unwrap(),
        );
        assert_eq!((&a.id, &a.auth_token), (&b.id, &b.auth_token));
    }
    let (sc, tc) = (
        source.room_created("moving").await.unwrap(),
        target.room_created("moving").await.unwrap(),
    );
    assert_eq!(
        ids(&sc, |r| r.id.to_string()),
        ids(&tc, |r| r.id.to_string())
    );
    let (st, tt) = (
        source.terminated_rooms("moving").await.unwrap(),
        target.terminated_rooms("moving").await.unwrap(),
    );
    assert_eq!(
        ids(&st, |r| r.id.to_string()),
        ids(&tt, |r| r.id.to_string())
    );
    assert_eq!(st[0].room_data, tt[0].room_data);
    let (sm, tm) = (
        source.member_history("moving").await.unwrap(),
        target.member_history("moving").await.unwrap(),
    );
    assert_eq!(
        ids(&sm, |m| format!(
            "{} {} {}",
            m.id, m.client_id, m.final_status
        )),
        ids(&tm, |m| format!(
            "{} {} {}",
            m.id, m.client_id, m.final_status
        ))
    );
    assert!(target.active_rooms().await.unwrap().is_empty());
    source.close().await;
    target.close().await;

    // The server on PostgreSQL accepts the registrations made on SQLite.
    let s2 = TestServer::start_with(|c| c.database.url = pg_url.clone()).await;
    let mut c = s2.client().await;
    c.authenticate("alice", "alice-registered-secret")
        .await
        .expect("a registration copied from SQLite authenticates on PostgreSQL");
    let (status, body) = http_get(&s2.http(), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"registered_clients\":2"), "{body}");
    s2.shutdown().await;

    // A second copy into the now full target is refused, and changes nothing.
    let out = copy_store(&sqlite_url, &pg_url);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the target is not empty (2 registered client(s))"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_source_with_live_rooms_is_refused() {
    let s = TestServer::start().await;
    let sqlite_url = format!("sqlite://{}", s.dir.path().join("signal.db").display());
    let a = s.registered("alice").await;
    a.create_room(&common::token("alice"), Some("live"), Some("v=0"))
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let target_url = format!("sqlite://{}", target.path().join("copy.db").display());
    let out = copy_store(&sqlite_url, &target_url);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the source holds 1 active room(s): stop the server"),
        "{}",
        text(&out)
    );
    // A URL that selects no store is a configuration error (64), naming the flag.
    let out = copy_store(&sqlite_url, "mysql://nope");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--to"), "{}", text(&out));
    drop(a);
    s.shutdown().await;
}
