//! The "moving" state of `mailctl user move` (migration 0003, `accounts.moving_to`): the
//! conditional steps mark → switch → release (or cancel), each changing a row only from the
//! state it expects, and the lookup with and without `[database.queries]` overrides (SQLite).

use postern_config::Config;
use postern_directory::{Directory, MoveState, NewSecret};

fn config(dir: &std::path::Path, queries: &str) -> Config {
    let text = format!(
        "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n[database]\nurl = \"sqlite://{d}/postern.db\"\n{queries}",
        d = dir.display()
    );
    Config::parse(&text, dir).expect("config")
}

const BOB: &str = "bob@example.org";

async fn state(dir: &Directory) -> (String, String) {
    let MoveState {
        host, moving_to, ..
    } = dir.move_state(BOB).await.unwrap();
    (host, moving_to)
}

fn pair(h: &str, m: &str) -> (String, String) {
    (h.to_owned(), m.to_owned())
}

/// The stamp is replaced by each step (removed first, so its return proves the write).
fn stamp_replaced(dir: &Directory, step: &str) {
    assert!(dir.change_stamp().exists(), "{step} replaces the stamp");
    std::fs::remove_file(dir.change_stamp()).unwrap();
}

#[tokio::test]
async fn a_move_steps_through_the_states_and_only_from_the_expected_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::open(&config(tmp.path(), "")).await.unwrap();
    dir.add_domain("example.org").await.unwrap();
    dir.add_user_on(BOB, NewSecret::Hash("{PLAIN}x"), 0, "b1")
        .await
        .unwrap();
    std::fs::remove_file(dir.change_stamp()).ok();
    assert_eq!(state(&dir).await, pair("b1", ""));
    let acct = dir.account(BOB).await.unwrap().unwrap();
    assert!(!acct.is_moving());

    // Nonsense is refused before anything is written.
    assert!(dir.mark_moving(BOB, "b1", "").await.is_err());
    assert!(dir.mark_moving(BOB, "b1", "B1").await.is_err(), "to itself");
    assert!(dir.mark_moving(BOB, "b1", "no host!").await.is_err());
    assert!(
        dir.mark_moving("nobody@example.org", "b1", "b2")
            .await
            .is_err()
    );
    assert_eq!(state(&dir).await, pair("b1", ""));

    // A source that is not where the account lives changes nothing.
    assert!(!dir.mark_moving(BOB, "b3", "b2").await.unwrap());
    assert_eq!(state(&dir).await, pair("b1", ""));
    std::fs::remove_file(dir.change_stamp()).ok();

    // Mark; a second mark (a concurrent second `move`) loses, whatever its target.
    assert!(dir.mark_moving(BOB, "b1", "B2").await.unwrap());
    stamp_replaced(&dir, "mark");
    assert!(!dir.mark_moving(BOB, "b1", "b2").await.unwrap());
    assert!(!dir.mark_moving(BOB, "b1", "b3").await.unwrap());
    assert_eq!(state(&dir).await, pair("b1", "b2"));
    let acct = dir.account(BOB).await.unwrap().unwrap();
    assert!(acct.is_moving());
    assert_eq!((acct.host.as_str(), acct.moving_to.as_str()), ("b1", "b2"));
    let listed = dir.list_users(None).await.unwrap();
    assert_eq!(listed[0].moving_to, "b2");

    // Release before the switch, or a switch to another target: nothing.
    assert!(!dir.release_move(BOB, "b2").await.unwrap());
    assert!(!dir.switch_moving_host(BOB, "b1", "b3").await.unwrap());
    assert_eq!(state(&dir).await, pair("b1", "b2"));

    // Switch: lives on b2, still moving. Cancelling is over now.
    std::fs::remove_file(dir.change_stamp()).ok();
    assert!(dir.switch_moving_host(BOB, "b1", "b2").await.unwrap());
    stamp_replaced(&dir, "switch");
    assert!(!dir.switch_moving_host(BOB, "b1", "b2").await.unwrap());
    assert!(!dir.cancel_move(BOB, "b1", "b2").await.unwrap());
    assert_eq!(state(&dir).await, pair("b2", "b2"));
    assert!(dir.account(BOB).await.unwrap().unwrap().is_moving());

    // Release: lives on b2, not moving; once only.
    assert!(dir.release_move(BOB, "b2").await.unwrap());
    stamp_replaced(&dir, "release");
    assert!(!dir.release_move(BOB, "b2").await.unwrap());
    assert_eq!(state(&dir).await, pair("b2", ""));
    assert!(!dir.account(BOB).await.unwrap().unwrap().is_moving());

    // Back to b1, then cancelled before the switch: lives on b2 again, not moving.
    assert!(dir.mark_moving(BOB, "b2", "b1").await.unwrap());
    assert!(!dir.cancel_move(BOB, "b2", "b3").await.unwrap());
    assert!(dir.cancel_move(BOB, "b2", "b1").await.unwrap());
    stamp_replaced(&dir, "cancel");
    assert_eq!(state(&dir).await, pair("b2", ""));

    // An account on "this node" (empty host) moves too.
    dir.set_host(BOB, "").await.unwrap();
    assert!(dir.mark_moving(BOB, "", "b2").await.unwrap());
    assert!(dir.switch_moving_host(BOB, "", "b2").await.unwrap());
    assert_eq!(state(&dir).await, pair("b2", "b2"));
    dir.close().await;
}

#[tokio::test]
async fn custom_queries_name_the_move_or_never_move() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::open(&config(tmp.path(), "")).await.unwrap();
    dir.add_domain("example.org").await.unwrap();
    dir.add_user_on(BOB, NewSecret::Hash("{PLAIN}x"), 0, "b1")
        .await
        .unwrap();
    assert!(dir.mark_moving(BOB, "b1", "b2").await.unwrap());
    dir.close().await;
    let moving_to = |queries: &'static str| {
        let p = tmp.path().to_owned();
        async move {
            let dir = Directory::open(&config(&p, queries)).await.unwrap();
            let a = dir.account(BOB).await.unwrap().unwrap();
            dir.close().await;
            (a.host, a.moving_to)
        }
    };
    assert_eq!(moving_to("").await, pair("b1", "b2"));
    // 4 or 5 columns: never moving.
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1 FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("", ""));
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1, host FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", ""));
    // A 6th column is the move target.
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1, host, 'B3' FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", "b3"));
    // A host query: its 2nd column, if any, overrides the account query's.
    let q = "[database.queries]\nhost = \"SELECT host FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", "b2"));
    let q = "[database.queries]\nhost = \"SELECT host, '' FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", ""));
    let q =
        "[database.queries]\nhost = \"SELECT host, moving_to FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", "b2"));
    // Not a host name: read as empty (never written into a protocol line).
    let q = "[database.queries]\nhost = \"SELECT host, 'a b' FROM accounts WHERE address = %u\"\n";
    assert_eq!(moving_to(q).await, pair("b1", ""));
}
