//! The account's `host` (cluster node, `[proxy]`): the schema migration, the admin
//! commands, and the lookup with and without `[database.queries]` overrides (SQLite).

use postern_config::Config;
use postern_directory::{Directory, NewSecret};

fn config(dir: &std::path::Path, queries: &str) -> Config {
    let text = format!(
        "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n[database]\nurl = \"sqlite://{d}/postern.db\"\n{queries}",
        d = dir.display()
    );
    Config::parse(&text, dir).expect("config")
}

const HASH: &str = "{PLAIN}x";

/// The `host` of an existing account.
async fn host_of(dir: &Directory, address: &str) -> String {
    dir.account(address).await.unwrap().unwrap().host
}

/// Bob's `host` as a directory opened with `queries` reads it.
async fn bob_host(dir: &std::path::Path, queries: &str) -> String {
    let dir = Directory::open(&config(dir, queries)).await.unwrap();
    let host = host_of(&dir, "bob@example.org").await;
    dir.close().await;
    host
}

#[tokio::test]
async fn host_is_stored_listed_and_looked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::open(&config(tmp.path(), "")).await.unwrap();
    dir.add_domain("example.org").await.unwrap();
    dir.add_user("alice@example.org", NewSecret::Hash(HASH), 0)
        .await
        .unwrap();
    dir.add_user_on("bob@example.org", NewSecret::Hash(HASH), 0, " B2.Example ")
        .await
        .unwrap();
    assert_eq!(host_of(&dir, "alice@example.org").await, "");
    assert_eq!(host_of(&dir, "bob@example.org").await, "b2.example");
    // set-host moves an account, "" brings it home; each change replaces the stamp.
    let stamp = dir.change_stamp().to_owned();
    let before = std::fs::read_to_string(&stamp).ok();
    std::fs::remove_file(&stamp).ok();
    assert_eq!(
        dir.set_host("alice@example.org", "10.0.0.3").await.unwrap(),
        "10.0.0.3"
    );
    assert!(
        stamp.exists(),
        "set-host must replace the change stamp ({before:?})"
    );
    dir.set_host("bob@example.org", "").await.unwrap();
    let users = dir.list_users(None).await.unwrap();
    let hosts: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.address.as_str(), u.host.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [("alice@example.org", "10.0.0.3"), ("bob@example.org", "")]
    );
    // Not a host: refused, nothing changed.
    for bad in ["a b", "host:24", "[::1]", "x\ty"] {
        assert!(
            dir.set_host("alice@example.org", bad).await.is_err(),
            "{bad:?}"
        );
    }
    assert!(dir.set_host("nobody@example.org", "b1").await.is_err());
    assert_eq!(host_of(&dir, "alice@example.org").await, "10.0.0.3");
    dir.close().await;
    // The migration ran once: opening again finds the column and keeps the data.
    let again = Directory::open(&config(tmp.path(), "")).await.unwrap();
    assert_eq!(host_of(&again, "alice@example.org").await, "10.0.0.3");
    again.close().await;
}

#[tokio::test]
async fn host_lookup_is_overridable() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let dir = Directory::open(&config(tmp.path(), "")).await.unwrap();
        dir.add_domain("example.org").await.unwrap();
        dir.add_user_on("bob@example.org", NewSecret::Hash(HASH), 0, "b2")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE node_map (login VARCHAR(320), node VARCHAR(253))")
            .execute(dir.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO node_map VALUES ('bob@example.org', 'b9.example')")
            .execute(dir.pool())
            .await
            .unwrap();
        dir.close().await;
    }
    // A host query of its own wins over the column.
    let q = "[database.queries]\nhost = \"SELECT node FROM node_map WHERE login = '%u'\"\n";
    assert_eq!(bob_host(tmp.path(), q).await, "b9.example");
    // A custom account query of four columns (an existing schema): every account is here.
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1 FROM accounts WHERE address = %u\"\n";
    assert_eq!(bob_host(tmp.path(), q).await, "");
    // ... and one with a fifth column gives the host, Dovecot-style; a value that is no
    // host name (hand-made SQL) is read as this node, never passed on.
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1, 'B3.example' FROM accounts WHERE address = %u\"\n";
    assert_eq!(bob_host(tmp.path(), q).await, "b3.example");
    let q = "[database.queries]\naccount = \"SELECT address, password, 0, 1, 'evil\tproxy' FROM accounts WHERE address = %u\"\n";
    assert_eq!(bob_host(tmp.path(), q).await, "");
}
