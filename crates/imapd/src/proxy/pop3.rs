//! Logging in to a backend's POP3: greeting, STLS per `[proxy] tls`, `XCLIENT ADDR= PORT=`
//! with the real client when the greeting says `[XCLIENT]` (as Dovecot's pop3 proxy does;
//! the login goes on if it is refused), then `AUTH PLAIN` with the user's credentials. The
//! backend's `+OK` line is the client's answer to its PASS or AUTH.

use postern_config::HopTls;

use super::{Backend, Failure, Hop, LOGIN_TIMEOUT, Lines, Target, unavailable};
use crate::Ctx;
use crate::login::Client;

fn ok(line: &[u8]) -> bool {
    line.starts_with(b"+OK")
}

async fn command(io: &mut Lines, cmd: &str) -> Result<Vec<u8>, Failure> {
    io.send(format!("{cmd}\r\n").as_bytes()).await?;
    io.line(LOGIN_TIMEOUT).await
}

/// Logs in to the backend `t` for `who`; on success [`Backend::reply`] is the backend's
/// `+OK` line.
pub async fn login(ctx: &Ctx, t: &Target, who: &Client) -> Result<Backend, Failure> {
    let limit = ctx.config.proxy.connect_timeout_secs.duration() + LOGIN_TIMEOUT;
    match tokio::time::timeout(limit, login_steps(ctx, t, who)).await {
        Ok(r) => r,
        Err(_) => Err(unavailable("backend login timed out")),
    }
}

async fn login_steps(ctx: &Ctx, t: &Target, who: &Client) -> Result<Backend, Failure> {
    let tcp: Hop = Box::new(super::connect(ctx, t).await?);
    let mut io = Lines::new(tcp);
    let greeting = io
        .line(ctx.config.proxy.connect_timeout_secs.duration())
        .await?;
    if !ok(&greeting) {
        return Err(unavailable("backend greeting is not +OK"));
    }
    let policy = ctx.config.proxy.tls;
    if policy != HopTls::None {
        let mut stls = false;
        if ok(&command(&mut io, "CAPA").await?) {
            loop {
                let l = io.line(LOGIN_TIMEOUT).await?;
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                stls |= l.eq_ignore_ascii_case(b"STLS\r\n");
            }
        }
        if stls {
            if !ok(&command(&mut io, "STLS").await?) {
                return Err(unavailable("backend refused STLS"));
            }
            io.buf.clear();
            let Lines { io: plain, .. } = io;
            io = Lines::new(super::start_tls(ctx, t, plain).await?);
        } else if policy == HopTls::Verify {
            return Err(unavailable("backend offers no STLS (proxy.tls = verify)"));
        }
    }
    // Only a backend that trusts us says [XCLIENT] in its greeting (Dovecot's convention,
    // which Postern's POP3 follows for `[imapd] proxy_networks`).
    if greeting.windows(9).any(|w| w == b"[XCLIENT]") {
        let origin = who.client_addr();
        let xclient = format!(
            "XCLIENT ADDR={} PORT={}",
            crate::canonical(origin.ip()),
            origin.port()
        );
        if !ok(&command(&mut io, &xclient).await?) {
            tracing::debug!(backend = %t.host, "pop3 backend refused our XCLIENT");
        }
    }
    let answer = command(&mut io, &format!("AUTH PLAIN {}", t.plain_b64())).await?;
    if !ok(&answer) {
        let text = String::from_utf8_lossy(&answer).trim_end().to_owned();
        // Only a refused password is the user's problem ([AUTH]); anything else
        // ([SYS/TEMP], [IN-USE], plaintext refused on the hop) is the cluster's.
        if text.starts_with("-ERR [AUTH]") && !text.contains("Plaintext") {
            return Err(Failure::Refused(text));
        }
        return Err(unavailable(format!("backend login: {text}")));
    }
    let Lines { io, buf } = io;
    Ok(Backend {
        io,
        pending: buf,
        reply: answer,
    })
}
