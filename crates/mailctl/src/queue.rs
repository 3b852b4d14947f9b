//! `mailctl queue list|show|flush|hold|release|delete`: the MTA's queue, through smtpd's
//! control socket (`smtpd` in the run directory). Answered from smtpd's in-memory schedule,
//! so listing a large queue is fast; no database is opened.

use std::time::Duration;

use clap::Subcommand;
use postern_config::Config;
use postern_control::{self as control, Client, QueueDetail, Request, Response};

use crate::admin::done;
use crate::output::Table;

/// How long to wait for smtpd (a listing of a very large queue takes a while).
const TIMEOUT: Duration = Duration::from_secs(120);

/// `mailctl queue …`
#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List queued messages (filters are case-insensitive substrings).
    List {
        /// Only messages whose sender contains this.
        #[arg(long)]
        sender: Option<String>,
        /// Only messages with a recipient containing this.
        #[arg(long)]
        recipient: Option<String>,
        /// Only messages with a recipient domain containing this.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show one message: envelope, each recipient's status and last reply.
    Show {
        /// The queue id.
        id: String,
        /// Also print the message header.
        #[arg(long)]
        headers: bool,
    },
    /// Try delivering one message (or every message not held) now.
    Flush {
        /// The queue id; every message when absent.
        id: Option<String>,
    },
    /// Hold a message: keep it queued but do not deliver it.
    Hold {
        /// The queue id.
        id: String,
    },
    /// Release a held message (it is tried at once).
    Release {
        /// The queue id.
        id: String,
    },
    /// Delete a message (or every message from a sender) without a bounce.
    Delete {
        /// The queue id.
        #[arg(required_unless_present = "all_from", conflicts_with = "all_from")]
        id: Option<String>,
        /// Every message from this sender (`<>` for bounces).
        #[arg(long, value_name = "ADDR")]
        all_from: Option<String>,
    },
}

/// Sends one request; a refusal becomes an error.
fn ask(config: &Config, req: &Request) -> anyhow::Result<Response> {
    let mut c = Client::for_config(config, TIMEOUT)?;
    let r = c.request(req)?;
    if !r.ok {
        anyhow::bail!("{}", r.error_text());
    }
    Ok(r)
}

/// Runs a `queue` command.
pub(crate) fn run(cmd: &QueueCmd, config: &Config, json: bool) -> anyhow::Result<()> {
    let req = match cmd {
        QueueCmd::List {
            sender,
            recipient,
            domain,
        } => Request::List {
            sender: sender.clone(),
            recipient: recipient.clone(),
            domain: domain.clone(),
        },
        QueueCmd::Show { id, headers } => Request::Show {
            id: id.clone(),
            headers: *headers,
        },
        QueueCmd::Flush { id } => Request::Flush { id: id.clone() },
        QueueCmd::Hold { id } => Request::Hold { id: id.clone() },
        QueueCmd::Release { id } => Request::Release { id: id.clone() },
        QueueCmd::Delete {
            all_from: Some(sender),
            ..
        } => Request::DeleteFrom {
            sender: sender.clone(),
        },
        QueueCmd::Delete { id, .. } => Request::Delete {
            id: id.clone().unwrap_or_default(),
        },
    };
    let r = ask(config, &req)?;
    match cmd {
        QueueCmd::List { .. } => {
            let list = r.messages.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print_list(&list);
            }
        }
        QueueCmd::Show { .. } => {
            let d = r
                .message
                .ok_or_else(|| anyhow::anyhow!("smtpd sent no message"))?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print_detail(&d);
            }
        }
        _ => done(json, r.text.unwrap_or_else(|| "done".into())),
    }
    Ok(())
}

fn print_list(list: &[control::QueueEntry]) {
    if list.is_empty() {
        println!("the queue is empty");
        return;
    }
    let mut t = Table::new(&control::LIST_HEADER);
    for row in control::list_rows(list) {
        t.row(row);
    }
    t.print();
    println!("{}", control::list_summary(list));
}

fn print_detail(d: &QueueDetail) {
    let e = &d.entry;
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let sender = if e.sender.is_empty() {
        "<>".to_owned()
    } else {
        e.sender.clone()
    };
    let mut t = Table::new(&["FIELD", "VALUE"]);
    for (k, v) in [
        ("id", e.id.clone()),
        ("sender", sender),
        ("size", e.size.to_string()),
        ("arrival", control::format_time(e.arrival)),
        ("attempts", e.attempts.to_string()),
        ("next attempt", control::format_time(e.next_attempt)),
        (
            "state",
            if e.held {
                "held"
            } else if e.delivering {
                "being delivered"
            } else {
                "queued"
            }
            .into(),
        ),
        ("submitted by", opt(&d.authenticated)),
        ("client", opt(&d.client_ip)),
        ("helo", opt(&d.helo)),
        ("last error", opt(&e.last_error)),
    ] {
        t.row(vec![k.into(), v]);
    }
    t.print();
    println!();
    let mut r = Table::new(&["RECIPIENT", "STATUS", "LAST REPLY"]);
    for x in &d.recipient_status {
        r.row(vec![
            x.address.clone(),
            x.status.clone(),
            opt(&x.last_reply),
        ]);
    }
    r.print();
    if let Some(h) = &d.headers {
        println!();
        print!("{}", h.replace("\r\n", "\n"));
    }
}
