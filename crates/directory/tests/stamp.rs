//! The directory's change stamp and its public copy in the run directory: every change
//! replaces both, the state one first, the public one readable by every daemon's user; a
//! missing run directory is no error; a name planted where the temporary goes is not
//! followed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use postern_config::Config;
use postern_directory::{Directory, NewSecret};

/// An install with its state and run directories below `dir`.
fn config(dir: &Path) -> Config {
    let text = format!(
        "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n[database]\nurl = \"sqlite://{d}/state/postern.db\"\n",
        d = dir.display()
    );
    Config::parse(&text, dir).expect("config")
}

async fn open(dir: &Path) -> Directory {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    Directory::open(&config(dir)).await.unwrap()
}

/// Both stamps, removed first so their return proves the write.
fn both_replaced(d: &Directory, step: &str) {
    let state = d.change_stamp();
    let public = d.public_change_stamp().expect("a public stamp");
    assert!(state.exists(), "{step}: the state stamp was not replaced");
    assert!(public.exists(), "{step}: the public stamp was not replaced");
    assert_eq!(
        std::fs::read_to_string(state).unwrap(),
        std::fs::read_to_string(public).unwrap(),
        "{step}: the two stamps hold the same time"
    );
    let m = std::fs::symlink_metadata(public).unwrap();
    assert!(m.is_file(), "{step}: the public stamp is a plain file");
    assert_eq!(m.permissions().mode() & 0o7777, 0o644, "{step}: its mode");
    std::fs::remove_file(state).unwrap();
    std::fs::remove_file(public).unwrap();
}

#[tokio::test]
async fn every_change_replaces_both_stamps() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    let d = open(tmp.path()).await;
    assert_eq!(
        d.public_change_stamp(),
        Some(tmp.path().join("run/directory.stamp").as_path())
    );
    for s in [d.change_stamp(), d.public_change_stamp().unwrap()] {
        std::fs::remove_file(s).ok();
    }
    d.add_domain("example.org").await.unwrap();
    both_replaced(&d, "domain add");
    d.add_user("bob@example.org", NewSecret::Hash("{PLAIN}x"), 0)
        .await
        .unwrap();
    both_replaced(&d, "user add");
    d.add_alias("team@example.org", &["bob@example.org".to_owned()])
        .await
        .unwrap();
    both_replaced(&d, "alias add");
    d.set_host("bob@example.org", "b2").await.unwrap();
    both_replaced(&d, "user set-host");
    d.remove_user("bob@example.org").await.unwrap();
    both_replaced(&d, "user remove");
    // A stamp already there (another user's, a hand-made one) is replaced too, and nothing
    // is left beside it.
    std::fs::write(d.public_change_stamp().unwrap(), "old").unwrap();
    std::fs::write(d.change_stamp(), "old").unwrap();
    d.add_domain("example.net").await.unwrap();
    assert_ne!(
        std::fs::read_to_string(d.public_change_stamp().unwrap()).unwrap(),
        "old"
    );
    let names = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(tmp.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("directory.stamp"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("run"), ["directory.stamp"]);
    assert_eq!(names("state"), ["directory.stamp"]);
    d.close().await;
}

/// The state stamp is replaced before the public one: a client that sees the public one
/// change and re-asks authd finds authd's own stamp already changed (one inotify instance
/// queues the events of its two watches in the order they happened).
#[tokio::test]
async fn the_state_stamp_is_replaced_first() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    let d = open(tmp.path()).await;
    let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    let state = ino
        .add_watch(&tmp.path().join("state"), AddWatchFlags::IN_MOVED_TO)
        .unwrap();
    let run = ino
        .add_watch(&tmp.path().join("run"), AddWatchFlags::IN_MOVED_TO)
        .unwrap();
    for n in 0..3 {
        d.add_domain(&format!("d{n}.example")).await.unwrap();
        let events = ino.read_events().unwrap();
        let order: Vec<&str> = events
            .iter()
            .filter(|e| e.name.as_deref() == Some("directory.stamp".as_ref()))
            .map(|e| if e.wd == state { "state" } else { "run" })
            .collect();
        assert_eq!(order, ["state", "run"], "change {n}");
        assert!(events.iter().any(|e| e.wd == run));
    }
    d.close().await;
}

/// A run directory that does not exist (tmpfs after a reboot, daemons never started) is no
/// error and leaves the state stamp replaced; a run directory that is the state directory
/// has one stamp.
#[tokio::test]
async fn a_missing_run_directory_is_no_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = open(tmp.path()).await;
    d.add_domain("example.org").await.unwrap();
    assert!(d.change_stamp().exists());
    assert!(!tmp.path().join("run").exists(), "no run directory made");
    d.close().await;

    let same = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n[database]\nurl = \"sqlite://{d}/postern.db\"\n",
        d = same.path().display()
    );
    let d = Directory::open(&Config::parse(&text, same.path()).unwrap())
        .await
        .unwrap();
    assert_eq!(d.public_change_stamp(), None);
    d.add_domain("example.org").await.unwrap();
    assert!(d.change_stamp().exists());
    d.close().await;
}

/// Whoever owns the run directory cannot make root's mailctl write elsewhere: a symlink
/// planted under the temporary's name is not followed (its target keeps its content), and
/// the stamp is still replaced by a plain file.
#[tokio::test]
async fn a_planted_temporary_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    let d = open(tmp.path()).await;
    let target = tmp.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let before = std::fs::metadata(&target).unwrap();
    for stamp in [d.change_stamp(), d.public_change_stamp().unwrap()] {
        let planted = stamp.with_extension(format!("stamp.{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &planted).unwrap();
    }
    d.add_domain("example.org").await.unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(after.mode(), before.mode(), "the target's mode changed");
    for stamp in [d.change_stamp(), d.public_change_stamp().unwrap()] {
        assert!(std::fs::symlink_metadata(stamp).unwrap().is_file());
        let planted = stamp.with_extension(format!("stamp.{}", std::process::id()));
        assert!(
            std::fs::symlink_metadata(&planted).is_err(),
            "the planted name is gone"
        );
    }
    d.close().await;
}
