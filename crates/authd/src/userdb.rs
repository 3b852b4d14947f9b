//! The `auth-userdb` socket: Dovecot's userdb protocol (`USER`, `PASS`, `LIST`) for the
//! delivery agent and the IMAP server.

use std::sync::Arc;

use postern_auth_proto::cache::Lookup;
use postern_auth_proto::userdb::{self, MasterCommand, parse_master_line};
use postern_auth_proto::{LineBuffer, LineError};
use postern_config::expand_template;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Ctx;

/// Unparseable lines tolerated before the connection is closed.
const MAX_BAD_LINES: u32 = 10;

/// Serves one userdb client until it closes, idles out, or shutdown.
pub(crate) async fn serve(stream: UnixStream, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // Registered for reading only: each answer the client reads would otherwise wake this
    // process for nothing (see postern_auth_proto::client::QuietUnixStream).
    let Ok(mut stream) = postern_auth_proto::client::QuietUnixStream::from_tokio(stream) else {
        return;
    };
    let hello = format!("VERSION\t1\t0\nSPID\t{}\n", std::process::id());
    if stream.write_all(hello.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = LineBuffer::new(ctx.config.authd.max_line);
    let idle = ctx.config.authd.idle_timeout_secs.duration();
    let mut buf = vec![0u8; 4096];
    let mut bad = 0u32;
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(idle, stream.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => { debug!("userdb client idle, closing"); return }
            },
        };
        lines.push(&buf[..n]);
        while let Some(line) = lines.next_line() {
            let reply = match line {
                Ok(l) => match parse_master_line(&l) {
                    Ok(cmd) => {
                        let started = std::time::Instant::now();
                        let request = !matches!(cmd, MasterCommand::Version { .. });
                        let reply = answer(cmd, &ctx).await;
                        if request {
                            crate::metrics::userdb(reply.as_deref(), started);
                        }
                        reply
                    }
                    Err(e) => {
                        bad += 1;
                        warn!(error = %e, "userdb: bad request");
                        // Answer with FAIL when the request id can be made out.
                        l.split('\t')
                            .nth(1)
                            .and_then(|id| id.parse::<u32>().ok())
                            .map(|id| userdb::fail(id, &format!("Invalid request: {e}")))
                    }
                },
                Err(LineError::TooLong) => {
                    warn!("userdb: request line too long, closing");
                    return;
                }
                Err(e) => {
                    bad += 1;
                    warn!(error = %e, "userdb: unreadable line");
                    None
                }
            };
            if let Some(r) = reply
                && stream.write_all(r.as_bytes()).await.is_err()
            {
                return;
            }
            if bad >= MAX_BAD_LINES {
                warn!("userdb: too many bad requests, closing");
                return;
            }
        }
    }
}

async fn answer(cmd: MasterCommand, ctx: &Ctx) -> Option<String> {
    match cmd {
        MasterCommand::Version { major, .. } if major != 1 => {
            Some(userdb::fail(0, "unsupported protocol version"))
        }
        MasterCommand::Version { .. } => None,
        MasterCommand::User { id, user, params } if params.service() == Some(MOVE_SERVICE) => {
            Some(move_target(ctx, id, &user).await)
        }
        MasterCommand::User { id, user, .. } => Some(match cached_account(ctx, &user).await {
            Ok(Some(acct)) if acct.is_moving() => moving(id, &acct),
            Ok(Some(acct)) => userdb::user_found(
                id,
                &acct.address,
                &fields(ctx, &acct.address, acct.quota_bytes, &acct.host),
            ),
            Ok(None) => userdb::not_found(id),
            Err(e) => {
                warn!(user = %user, error = %e, "userdb lookup failed");
                userdb::fail(id, "Temporary directory failure")
            }
        }),
        MasterCommand::Pass { id, user, params } => {
            Some(match ctx.directory.account(&user).await {
                Ok(Some(acct)) if acct.enabled && acct.is_moving() => moving(id, &acct),
                Ok(Some(acct)) if acct.enabled => {
                    let service = params
                        .get("service")
                        .or_else(|| params.get("protocol"))
                        .unwrap_or("");
                    pass_reply(ctx, id, &acct.address, &acct.host, service)
                }
                Ok(_) => userdb::not_found(id),
                Err(e) => {
                    warn!(user = %user, error = %e, "passdb lookup failed");
                    userdb::fail(id, "Temporary directory failure")
                }
            })
        }
        MasterCommand::List { id, params } => {
            let mask = params.get("user").map(str::to_lowercase);
            Some(match ctx.directory.list_logins().await {
                Ok(users) => {
                    let mut out = String::new();
                    for u in users
                        .iter()
                        .filter(|u| mask.as_deref().is_none_or(|m| wildcard(m, u)))
                    {
                        out.push_str(&userdb::list_entry(id, u));
                    }
                    out.push_str(&userdb::list_done(id, false));
                    out
                }
                Err(e) => {
                    warn!(error = %e, "userdb list failed");
                    userdb::list_done(id, true)
                }
            })
        }
    }
}

/// The `service` of imapd's move receiver's `USER` lookups (imapd's `mover.rs` sends it).
const MOVE_SERVICE: &str = "postern-move";

/// `USER` with `service=postern-move`: imapd's move receiver asks before it takes a home.
/// Found (with the usual fields, `home` among them) only when the directory — read now,
/// never the cache — marks the account as moving to this node (`moving_to` equal to
/// `[proxy] self`); otherwise not found, and the receiver refuses. So the cluster's move
/// secret alone does not let a peer write or remove the home of an account that nobody
/// is moving here.
async fn move_target(ctx: &Ctx, id: u32, user: &str) -> String {
    let me = ctx.config.proxy.self_name.trim();
    match ctx.directory.account(user).await {
        Ok(Some(acct)) if !me.is_empty() && acct.moving_to.trim().eq_ignore_ascii_case(me) => {
            userdb::user_found(
                id,
                &acct.address,
                &fields(ctx, &acct.address, acct.quota_bytes, ""),
            )
        }
        Ok(_) => {
            info!(user = %user, "userdb: a move here was asked for an account not moving here");
            userdb::not_found(id)
        }
        Err(e) => {
            warn!(user = %user, error = %e, "userdb move lookup failed");
            userdb::fail(id, "Temporary directory failure")
        }
    }
}

/// The answer for an account `mailctl user move` is moving: a temporary failure (`FAIL`),
/// so the delivery agent answers `451 4.x.x` and writes nothing, and imapd refuses the
/// login for now; the mail waits in the senders' queues until the move is over.
fn moving(id: u32, acct: &postern_directory::Account) -> String {
    debug!(user = %acct.address, to = %acct.moving_to, "userdb: account is being moved");
    userdb::fail(id, "Mailbox is being moved; try again later")
}

/// A passdb `PASS` answer; an account on another node gets the proxy fields, as in the
/// auth `OK` (see [`crate::auth::ok_reply`]).
fn pass_reply(ctx: &Ctx, id: u32, address: &str, host: &str, service: &str) -> String {
    match crate::auth::proxy_fields(&ctx.config.proxy, host, service) {
        None => userdb::pass_found::<&str, &str>(id, address, &[]),
        Some(fields) => {
            let mut line = userdb::pass_found(id, address, &fields);
            line.pop();
            line.push_str("\tproxy\n");
            line
        }
    }
}

/// The account for a userdb `USER` lookup, through the cache (failures are not cached).
async fn cached_account(
    ctx: &Ctx,
    user: &str,
) -> Result<Option<postern_directory::Account>, postern_directory::DirectoryError> {
    let key = user.to_lowercase();
    let ticket = match ctx.users.get(&key) {
        Lookup::Hit(a) => return Ok(a),
        Lookup::Miss(t) => t,
    };
    let account = ctx.directory.account(&key).await?;
    ctx.users.put(ticket, key, account.clone());
    Ok(account)
}

/// authd's own ids, asked once (they never change: authd does not switch users after start).
static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
static OWN_GID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// The userdb fields of an account; `host=` (Dovecot's field) when it lives on another
/// node (`[proxy]`), so that a delivery agent or IMAP server can tell it is not served here.
pub(crate) fn fields(
    ctx: &Ctx,
    address: &str,
    quota_bytes: i64,
    host: &str,
) -> Vec<(String, String)> {
    let c = &ctx.config;
    let home_t = c.home_template();
    let mail_t = c.mail_template();
    let uid = c
        .authd
        .userdb
        .uid
        .unwrap_or_else(|| *OWN_UID.get_or_init(|| nix::unistd::getuid().as_raw()));
    let gid = c
        .authd
        .userdb
        .gid
        .unwrap_or_else(|| *OWN_GID.get_or_init(|| nix::unistd::getgid().as_raw()));
    let mut f = vec![
        ("home".to_owned(), expand_template(&home_t, address)),
        ("uid".to_owned(), uid.to_string()),
        ("gid".to_owned(), gid.to_string()),
        ("mail".to_owned(), expand_template(&mail_t, address)),
    ];
    if quota_bytes > 0 {
        f.push(("quota_rule".to_owned(), format!("*:storage={quota_bytes}B")));
    }
    if let Some(h) = c.proxy.remote_host(host) {
        f.push(("host".to_owned(), h.to_owned()));
    }
    f
}

/// Dovecot-style mask: `*` any run, `?` one character.
fn wildcard(mask: &str, s: &str) -> bool {
    let (m, t): (Vec<char>, Vec<char>) = (mask.chars().collect(), s.chars().collect());
    let (mut mi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if mi < m.len() && (m[mi] == '?' || m[mi] == t[ti]) {
            mi += 1;
            ti += 1;
        } else if mi < m.len() && m[mi] == '*' {
            star = Some(mi);
            mark = ti;
            mi += 1;
        } else if let Some(s) = star {
            mi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    m[mi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn masks() {
        assert!(wildcard("*@example.org", "a@example.org"));
        assert!(wildcard("a?c@*", "abc@x"));
        assert!(!wildcard("*@example.org", "a@example.net"));
        assert!(wildcard("*", ""));
    }
}
