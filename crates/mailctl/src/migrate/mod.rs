//! `mailctl migrate plan|check|apply`: taking over a Postfix + Dovecot (+ OpenDKIM) server.
//!
//! - `plan` reads the old configuration (through `postconf` and `doveconf` when they are
//!   installed, the files otherwise) and prints what each setting becomes ([`plan::Plan`]).
//! - `apply` writes the `postern.toml` of the plan (never touching the old files), copies
//!   the DKIM keys with their selectors, imports passwd-file accounts and `hash:` tables
//!   into Postern's SQLite, and prints the switch steps with their rollback.
//! - `check` compares, against the live data, what Postern's directory answers with what
//!   Postfix (`postmap -q`) and Dovecot (`doveadm user`) answer.
//!
//! The parsing and translation (`postfix`, `dovecot`, `plan`, `render`, `steps`) do no
//! I/O; this module and `apply`/`check` read files and run the tools.

mod apply;
mod check;
mod dovecot;
mod plan;
mod postfix;
mod render;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

pub(crate) use plan::Plan;

/// Largest file read from the old configuration (map sources, passwd-files): bigger is not
/// a config file.
const MAX_FILE: u64 = 64 << 20;

/// `mailctl migrate …`
#[derive(Subcommand, Debug)]
pub enum MigrateCmd {
    /// Read the Postfix/Dovecot/OpenDKIM configuration and print what each setting becomes
    /// in Postern (a table, or --json). Changes nothing.
    Plan(SourceArgs),
    /// Compare the live data through Postern's directory (the config written by apply,
    /// -c) with Postfix (postmap -q) and Dovecot (doveadm user): domains, accounts,
    /// aliases, password schemes, Maildir uidlists, DKIM records. Starts no listeners;
    /// exit status 1 on any mismatch.
    Check(CheckArgs),
    /// Write the postern.toml of the plan (--out), copy the DKIM keys, import passwd-file
    /// accounts and hash: tables, and print the switch steps with their rollback. The old
    /// configuration is not touched.
    Apply(ApplyArgs),
}

/// Where the old configuration is.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Postfix's configuration directory (main.cf, master.cf).
    #[arg(long, default_value = "/etc/postfix")]
    pub postfix: PathBuf,
    /// Dovecot's configuration directory (dovecot.conf), or the dovecot.conf file.
    #[arg(long, default_value = "/etc/dovecot")]
    pub dovecot: PathBuf,
    /// opendkim.conf.
    #[arg(long)]
    pub opendkim: Option<PathBuf>,
    /// Parse the files even when postconf and doveconf are installed.
    #[arg(long)]
    pub no_tools: bool,
}

/// `migrate apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The old configuration.
    #[command(flatten)]
    pub source: SourceArgs,
    /// The config file to write.
    #[arg(long, default_value = postern_config::DEFAULT_CONFIG_PATH)]
    pub out: PathBuf,
    /// `[paths] state_dir` of the new config (default: Postern's, /var/lib/postern).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// `[paths] run_dir` of the new config (default: Postern's, /run/postern).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Replace an existing --out file, and go on despite the plan's blockers.
    #[arg(long)]
    pub force: bool,
}

/// `migrate check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The old configuration.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Skip `doveadm user` (Dovecot not running).
    #[arg(long)]
    pub no_doveadm: bool,
    /// Skip the DKIM record lookups.
    #[arg(long)]
    pub no_dns: bool,
}

/// Runs a `migrate` command. `config` is `-c` (the config apply writes, check reads).
pub(crate) fn run(cmd: &MigrateCmd, config: &Path, json: bool) -> anyhow::Result<()> {
    match cmd {
        MigrateCmd::Plan(src) => {
            let (plan, notes) = read_plan(src)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                for n in notes {
                    println!("# {n}");
                }
                print!("{}", render::table(&plan));
            }
            Ok(())
        }
        MigrateCmd::Apply(a) => apply::run(a, json),
        MigrateCmd::Check(a) => check::run(a, config, json),
    }
}

/// The old configuration, read: the inputs of the plan, and how they were read.
pub(crate) struct Source {
    pub(crate) inputs: plan::Inputs,
    pub(crate) notes: Vec<String>,
    /// `dovecot.conf`.
    pub(crate) dovecot_conf: PathBuf,
}

/// Reads the configuration and builds the plan.
pub(crate) fn read_plan(src: &SourceArgs) -> anyhow::Result<(Plan, Vec<String>)> {
    let s = read_source(src)?;
    Ok((plan::build(&s.inputs), s.notes))
}

pub(crate) fn read_source(src: &SourceArgs) -> anyhow::Result<Source> {
    let mut notes = Vec::new();
    let mut inputs = plan::Inputs::default();
    read_postfix(src, &mut inputs, &mut notes)?;
    let dovecot_conf = if src.dovecot.is_dir() {
        src.dovecot.join("dovecot.conf")
    } else {
        src.dovecot.clone()
    };
    read_dovecot(src, &dovecot_conf, &mut inputs, &mut notes)?;
    if let Some(o) = &src.opendkim {
        let text = read_limited(o)?;
        inputs.opendkim = Some(plan::parse_opendkim(&text));
    }
    for f in plan::referenced_files(&inputs) {
        match read_limited(Path::new(&f)) {
            Ok(t) => {
                inputs.files.insert(f, t);
            }
            Err(e) => notes.push(format!("cannot read {f}: {e:#}")),
        }
    }
    inputs.uid_of = id_file("/etc/passwd");
    inputs.gid_of = id_file("/etc/group");
    Ok(Source {
        inputs,
        notes,
        dovecot_conf,
    })
}

/// Postfix parameters the plan wants even when they have their default value.
const POSTFIX_EFFECTIVE: &[&str] = &["myhostname", "mynetworks", "message_size_limit"];

fn read_postfix(
    src: &SourceArgs,
    inputs: &mut plan::Inputs,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let dir = &src.postfix;
    if !dir.join("main.cf").is_file() {
        bail!("{} has no main.cf", dir.display());
    }
    let postconf = tool("postconf");
    if let (Some(pc), false) = (&postconf, src.no_tools) {
        let explicit = run_tool(Command::new(pc).arg("-c").arg(dir).args(["-n", "-x"]))?;
        let mut effective = postfix::parse_params(&run_tool(
            Command::new(pc)
                .arg("-c")
                .arg(dir)
                .arg("-x")
                .args(POSTFIX_EFFECTIVE),
        )?);
        let explicit = postfix::parse_params(&explicit);
        inputs.postfix_explicit = explicit.keys().cloned().collect();
        effective.extend(explicit);
        inputs.postfix = effective;
        let master = run_tool(Command::new(pc).arg("-c").arg(dir).arg("-M"))?;
        inputs.master = postfix::master_services(&master);
        notes.push(format!(
            "Postfix read with {} -c {} -n -x / -M",
            pc.display(),
            dir.display()
        ));
    } else {
        let text = read_limited(&dir.join("main.cf"))?;
        let raw = postfix::parse_params(&text);
        let mut params: BTreeMap<String, String> = raw
            .iter()
            .map(|(k, v)| (k.clone(), postfix::expand(v, &raw)))
            .collect();
        inputs.postfix_explicit = params.keys().cloned().collect();
        // Postfix's defaults for what the plan needs.
        if !params.contains_key("myhostname") {
            let h = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into());
            params.insert("myhostname".into(), h);
        }
        params
            .entry("message_size_limit".into())
            .or_insert_with(|| "10240000".into());
        params
            .entry("mynetworks".into())
            .or_insert_with(|| "127.0.0.0/8 [::1]/128".into());
        inputs.postfix = params;
        if let Ok(m) = read_limited(&dir.join("master.cf")) {
            inputs.master = postfix::master_services(&m);
        }
        notes.push(format!(
            "Postfix read from {}/main.cf (postconf {}): defaults approximated",
            dir.display(),
            if postconf.is_some() {
                "not used"
            } else {
                "not installed"
            }
        ));
    }
    Ok(())
}

fn read_dovecot(
    src: &SourceArgs,
    conf: &Path,
    inputs: &mut plan::Inputs,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    if !conf.is_file() {
        bail!("{} does not exist", conf.display());
    }
    if let (Some(dc), false) = (tool("doveconf"), src.no_tools) {
        // -P: secrets are shown instead of "# hidden" (ssl_key is one); none is printed.
        match run_tool(Command::new(&dc).arg("-c").arg(conf).args(["-n", "-P"])) {
            Ok(text) => {
                inputs.dovecot = dovecot::parse(&text, &mut |_| Vec::new());
                notes.push(format!(
                    "Dovecot read with {} -c {} -n -P",
                    dc.display(),
                    conf.display()
                ));
                return Ok(());
            }
            Err(e) => notes.push(format!("doveconf failed ({e:#}): reading the files")),
        }
    }
    let base = conf.parent().unwrap_or(Path::new("/")).to_owned();
    let text = read_limited(conf)?;
    inputs.dovecot = dovecot::parse(&text, &mut |pat| include_files(&base, pat));
    notes.push(format!(
        "Dovecot read from {} and its includes",
        conf.display()
    ));
    Ok(())
}

/// The files an `!include` pattern names (`conf.d/*.conf`), sorted, relative to `base`.
fn include_files(base: &Path, pattern: &str) -> Vec<String> {
    let p = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files: Vec<PathBuf> = match name.split_once('*') {
        Some((pre, suf)) => {
            let dir = p.parent().unwrap_or(Path::new("/"));
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|f| {
                            f.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .is_some_and(|n| {
                                    n.starts_with(pre)
                                        && n.ends_with(suf)
                                        && n.len() >= pre.len() + suf.len()
                                })
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
        None => vec![p],
    };
    files.iter().filter_map(|f| read_limited(f).ok()).collect()
}

/// A file's text, refusing more than [`MAX_FILE`] bytes.
pub(crate) fn read_limited(path: &Path) -> anyhow::Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    Ok(buf)
}

/// `/usr/sbin/NAME` or `/usr/bin/NAME`, when installed.
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs a tool and returns its stdout; its stderr in the error.
pub(crate) fn run_tool(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names and ids of /etc/passwd or /etc/group.
fn id_file(path: &str) -> BTreeMap<String, u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

/// The Postfix parameters a switch step changes, with their old values (for rollback).
pub(crate) fn old_values(inputs: &plan::Inputs, names: &[&str]) -> BTreeMap<String, String> {
    let set: BTreeSet<&str> = names.iter().copied().collect();
    inputs
        .postfix
        .iter()
        .filter(|(k, _)| set.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
