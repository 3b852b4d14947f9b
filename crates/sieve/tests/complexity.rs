//! Hostile message headers against scripts with expensive-looking tests: every run finishes
//! (matched, not matched, or stopped by the work budget) without super-linear work. The
//! inputs are large enough that exponential or quadratic matching would run for minutes.

mod common;

use common::*;
use postern_sieve::Action;

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    eprintln!("{what}: {:?}", t.elapsed());
    r
}

/// Either the script ran (and `check` holds) or it hit the work limit (the caller then
/// keeps the message, RFC 5228 2.10.6).
fn finishes(what: &str, script: &str, raw: &str, check: impl Fn(&[Action]) -> bool) {
    let r = timed(what, || {
        run_full(
            script,
            &Msg::new(raw),
            &env(Some("a@example.org"), "me@example.com"),
            &[],
        )
    });
    match r {
        Ok(o) => assert!(check(&o.actions), "{what}: {:?}", o.actions),
        Err(Failure::Runtime(e)) => assert!(e.message.contains("work limit"), "{what}: {e}"),
        Err(Failure::Compile(e)) => panic!("{what}: {e}"),
    }
}

#[test]
fn matches_with_many_stars_against_a_long_subject() {
    let raw = format!("Subject: {}\r\n\r\nbody\r\n", "a".repeat(2 << 20));
    let script = r#"require "fileinto";
        if header :matches "subject" "*a*a*a*a*a*a*a*a*a*a*a*a*b" { fileinto "X"; }"#;
    finishes(":matches *a*a…b", script, &raw, |a| a == [keep()]);
    let script = r#"require "fileinto";
        if header :matches "subject" "*?*?*?*?*?*?*?*?*?*?*?*?*b*" { fileinto "X"; }"#;
    finishes(":matches *?*?…b*", script, &raw, |a| a == [keep()]);
}

#[test]
fn address_and_contains_on_huge_headers() {
    let to: Vec<String> = (0..50_000)
        .map(|i| format!("\"u{i}\" <u{i}@x.org>"))
        .collect();
    let raw = format!(
        "To: {}\r\nSubject: {}\r\n\r\nbody\r\n",
        to.join(", "),
        "(((((".repeat(200_000)
    );
    let script = r#"require "fileinto";
        if address :matches :all "to" "*z*z*z*z*z*" { fileinto "X"; }
        if header :contains "subject" "((((((((((((((((((((((((((x" { fileinto "Y"; }"#;
    finishes("address / contains", script, &raw, |a| a == [keep()]);
}
