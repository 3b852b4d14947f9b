//! The crate layering of ARCHITECTURE.md, checked against `cargo metadata`: every workspace
//! crate is in a layer, and imports (dependencies of any kind) only what its layer may.
//!
//! A new crate fails this test until it is given a layer here and in ARCHITECTURE.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The layers, lowest first. A crate may import crates of lower layers; within its own
/// layer only where [`may_import_same_layer`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Types and configuration everyone shares; import no workspace crate.
    Base,
    /// Protocols and formats: pure or sans-I/O, plus small clients; no storage, no runtime.
    Protocol,
    /// On-disk storage: Maildir, queue.
    Storage,
    /// Shared runtime and services: sockets/logging/TLS, the user directory, the control
    /// socket's client side, DNS.
    Service,
    /// Programs: the daemons and the command-line tools. Import no other program.
    Program,
    /// The end-to-end tests: may import anything.
    Tests,
}

fn layer_of(name: &str) -> Option<Layer> {
    use Layer::*;
    Some(match name {
        "postern-mail-types" | "postern-config" => Base,
        "postern-smtp-session"
        | "postern-smtp-client"
        | "postern-auth-proto"
        | "postern-imap-message"
        | "postern-sieve"
        | "postern-managesieve"
        | "postern-dsn" => Protocol,
        "postern-maildir" | "postern-queue" => Storage,
        "postern-daemon" | "postern-directory" | "postern-control" | "postern-dns"
        | "postern-transfer" => Service,
        "postern-authd"
        | "postern-smtpd"
        | "postern-lmtp-deliver"
        | "postern-imapd"
        | "postern-mailctl"
        | "postern-sendmail"
        | "postern-bench" => Program,
        "postern-e2e" => Tests,
        _ => return None,
    })
}

/// Same-layer imports that are allowed: services build on the daemon plumbing.
fn may_import_same_layer(from: &str, to: &str) -> bool {
    layer_of(from) == Some(Layer::Service) && to == "postern-daemon"
}

/// Every breach of the layering in `graph` (crate → its workspace dependencies).
fn violations(graph: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, deps) in graph {
        let Some(lf) = layer_of(from) else {
            out.push(format!(
                "{from} has no layer: add it to tests/tests/layering.rs and ARCHITECTURE.md"
            ));
            continue;
        };
        for to in deps {
            let Some(lt) = layer_of(to) else {
                out.push(format!("{from} imports {to}, which has no layer"));
                continue;
            };
            let ok = lt < lf || (lt == lf && may_import_same_layer(from, to)) || lf == Layer::Tests;
            if !ok {
                out.push(format!("{from} ({lf:?}) may not import {to} ({lt:?})"));
            }
        }
    }
    out
}

/// The workspace's crates and their dependencies on each other (every kind: normal, dev,
/// build), from `cargo metadata --no-deps`.
fn workspace_graph() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: Vec<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let mut deps: Vec<String> = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter_map(|d| d["name"].as_str())
                .filter(|n| names.iter().any(|m| m == n))
                .map(str::to_owned)
                .collect();
            deps.sort();
            deps.dedup();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn workspace_crates_import_only_along_the_layers() {
    let graph = workspace_graph();
    assert!(
        graph.contains_key("postern-smtpd") && graph.contains_key("postern-mail-types"),
        "cargo metadata listed the workspace: {graph:?}"
    );
    let bad = violations(&graph);
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn architecture_md_names_every_crate() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("ARCHITECTURE.md at the repository root");
    let missing: Vec<String> = workspace_graph()
        .keys()
        .filter(|name| {
            let short = name.strip_prefix("postern-").unwrap_or(name);
            let short = if short == "e2e" { "tests" } else { short };
            !text.contains(&format!("`{short}`"))
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "not in ARCHITECTURE.md's layer table: {missing:?}"
    );
}

#[test]
fn the_check_catches_what_the_rule_forbids() {
    let graph = |edges: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(f, t)| (f.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    // A tool linking a daemon, a daemon linking a daemon, a protocol crate linking storage,
    // storage linking a service, a crate nobody placed.
    for (edges, what) in [
        (
            graph(&[("postern-mailctl", &["postern-smtpd"])]),
            "may not import",
        ),
        (
            graph(&[("postern-imapd", &["postern-authd"])]),
            "may not import",
        ),
        (
            graph(&[("postern-dsn", &["postern-queue"])]),
            "may not import",
        ),
        (
            graph(&[("postern-queue", &["postern-daemon"])]),
            "may not import",
        ),
        (
            graph(&[("postern-control", &["postern-dns"])]),
            "may not import",
        ),
        (graph(&[("postern-new", &[])]), "has no layer"),
    ] {
        let bad = violations(&edges);
        assert!(
            bad.len() == 1 && bad[0].contains(what),
            "{edges:?} gave {bad:?}"
        );
    }
    // What the rule allows.
    let fine = graph(&[
        (
            "postern-smtpd",
            &["postern-queue", "postern-dns", "postern-mail-types"],
        ),
        ("postern-directory", &["postern-daemon", "postern-config"]),
        ("postern-e2e", &["postern-smtpd"]),
    ]);
    assert_eq!(violations(&fine), Vec::<String>::new());
}
