//! smtpd's cluster-wide policy state (migration 0004) on SQLite: the hourly sending count
//! (a sliding window of minutes, reserved atomically, bounded rows) and greylist triplets,
//! with two handles writing at once as two authd instances would. The same walk runs on
//! PostgreSQL and MariaDB in `tests/tests/e2e/cluster_policy.rs`.

use postern_config::Config;
use postern_directory::{Directory, GreylistTiming, GreylistVerdict, SendCount};
use sqlx::Row;

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n[database]\nurl = \"sqlite://{d}/postern.db\"\n",
        d = dir.display()
    );
    Config::parse(&text, dir).expect("config")
}

const T: GreylistTiming = GreylistTiming {
    delay: 60,
    window: 3600,
    allow: 86_400,
};

async fn count_rows(dir: &Directory, table: &str) -> i64 {
    let q = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query(sqlx::AssertSqlSafe(q))
        .fetch_one(dir.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

#[tokio::test]
async fn the_hour_is_a_sliding_window_of_minutes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::open(&config(tmp.path())).await.unwrap();
    let p = dir.shared_policy();
    let t0 = 1_800_000_000; // a minute's start (a multiple of 60)
    // Three in the first minute, the limit is 4.
    for i in 1..=3 {
        assert_eq!(
            p.count_message_at("Alice@Example.org", 4, t0 + i)
                .await
                .unwrap(),
            SendCount::Counted(i as u32)
        );
    }
    // Half an hour later: the fourth, then full until the first minute leaves the hour.
    assert_eq!(
        p.count_message_at("alice@example.org", 4, t0 + 1800)
            .await
            .unwrap(),
        SendCount::Counted(4)
    );
    assert_eq!(
        p.count_message_at("alice@example.org", 4, t0 + 1801)
            .await
            .unwrap(),
        SendCount::Full(4, 3600 - 1801)
    );
    assert_eq!(
        p.sent_at("alice@example.org", t0 + 1801).await.unwrap(),
        4,
        "a refusal counts nothing"
    );
    // Another user has a window of their own; 0 means no limit.
    assert_eq!(
        p.count_message_at("bob@example.org", 1, t0).await.unwrap(),
        SendCount::Counted(1)
    );
    assert!(matches!(
        p.count_message_at("bob@example.org", 1, t0 + 5)
            .await
            .unwrap(),
        SendCount::Full(1, _)
    ));
    assert_eq!(
        p.count_message_at("bob@example.org", 0, t0 + 5)
            .await
            .unwrap(),
        SendCount::Counted(2)
    );
    // An hour after the first minute: the three are out, one left in the window.
    assert_eq!(
        p.count_message_at("alice@example.org", 4, t0 + 3600)
            .await
            .unwrap(),
        SendCount::Counted(2)
    );
    // The old minute's row went with it: rows per user stay bounded.
    let rows: i64 =
        sqlx::query("SELECT COUNT(*) FROM send_counts WHERE subject = 'alice@example.org'")
            .fetch_one(dir.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 1 + 1, "the minute of t0+1800 and the current one");
    // Nonsense is refused before anything is written.
    assert!(p.count_message_at("", 4, t0).await.is_err());
    assert!(p.count_message_at(&"x".repeat(400), 4, t0).await.is_err());

    // The sweep forgets what left the window.
    assert!(p.sweep_at(t0 + 4 * 3600).await.unwrap() >= 3);
    assert_eq!(count_rows(&dir, "send_counts").await, 0);
    assert_eq!(count_rows(&dir, "send_users").await, 0);
}

#[tokio::test]
async fn greylist_triplets_defer_pass_expire_and_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::open(&config(tmp.path())).await.unwrap();
    let p = dir.shared_policy();
    let k = "192.0.2.0/24|a@x.test|b@y.test";
    assert_eq!(
        p.greylist_at(k, T, 1000).await.unwrap(),
        GreylistVerdict::Defer(60)
    );
    assert_eq!(
        p.greylist_at(k, T, 1030).await.unwrap(),
        GreylistVerdict::Defer(30)
    );
    assert_eq!(
        p.greylist_at(k, T, 1061).await.unwrap(),
        GreylistVerdict::Pass
    );
    assert_eq!(
        p.greylist_at(k, T, 5000).await.unwrap(),
        GreylistVerdict::Pass
    );
    let k2 = "192.0.2.0/24|a@x.test|c@y.test";
    assert_eq!(
        p.greylist_at(k2, T, 5000).await.unwrap(),
        GreylistVerdict::Defer(60)
    );
    assert_eq!(
        p.greylist_at(k2, T, 5000 + 3601).await.unwrap(),
        GreylistVerdict::Defer(60),
        "the window passed: starts over"
    );
    assert_eq!(
        p.greylist_at(k, T, 5000 + 86_401).await.unwrap(),
        GreylistVerdict::Defer(60),
        "unseen for longer than allow"
    );
    assert_eq!(
        p.greylist_at(k, T, 5000 + 86_401 + 61).await.unwrap(),
        GreylistVerdict::Pass
    );
    assert!(p.greylist_at(&"k".repeat(601), T, 1).await.is_err());
    // The sweep removes expired rows only: k2 (deferred at 8601, window 3600) goes after 12201.
    assert_eq!(p.sweep_at(12_000).await.unwrap(), 0);
    assert_eq!(p.sweep_at(12_202).await.unwrap(), 1);
    assert_eq!(count_rows(&dir, "greylist_triplets").await, 1);
    assert_eq!(
        p.greylist_at(k, T, 5000 + 86_401 + 62).await.unwrap(),
        GreylistVerdict::Pass
    );
}

/// Two handles (two authd instances) reserve at once: exactly `limit` get through.
#[tokio::test]
async fn concurrent_writers_never_exceed_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let a = Directory::open(&cfg).await.unwrap().shared_policy();
    let b = Directory::open(&cfg).await.unwrap().shared_policy();
    let now = 1_800_000_000;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            p.count_message_at("carol@example.org", 25, now)
                .await
                .unwrap()
        }));
    }
    let mut counted = Vec::new();
    for t in tasks {
        if let SendCount::Counted(n) = t.await.unwrap() {
            counted.push(n);
        }
    }
    counted.sort_unstable();
    assert_eq!(
        counted,
        (1..=25).collect::<Vec<u32>>(),
        "each reservation saw the ones before it"
    );
    assert_eq!(a.sent_at("carol@example.org", now).await.unwrap(), 25);
    // Concurrent first sightings of one triplet: one row, every answer a deferral.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            p.greylist_at("198.51.100.0/24|s@x.test|r@y.test", T, now)
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), GreylistVerdict::Defer(60));
    }
}
