//! Logging in to a backend's IMAP: greeting, STARTTLS per `[proxy] tls`, `ID` with the real
//! client, `AUTHENTICATE PLAIN` with the user's credentials (SASL-IR when offered). The
//! backend's answer (its untagged lines and the tagged line, with the client's tag) is what
//! the client gets for its LOGIN or AUTHENTICATE, so the `[CAPABILITY …]` the client sees
//! after login is the backend's.

use postern_config::HopTls;

use super::{Backend, Failure, Hop, LOGIN_TIMEOUT, Lines, Target, quoted, unavailable};
use crate::Ctx;
use crate::login::Client;

/// The capabilities in a greeting's or OK's `[CAPABILITY …]` code, or an untagged
/// `* CAPABILITY` line (upper case).
pub fn capabilities(line: &str) -> Option<Vec<String>> {
    let line = line.trim_end();
    let rest = if let Some(i) = line.find("[CAPABILITY ") {
        let r = &line[i + "[CAPABILITY ".len()..];
        &r[..r.find(']')?]
    } else {
        let up = line.get(..13)?;
        if !up.eq_ignore_ascii_case("* CAPABILITY ") {
            return None;
        }
        &line[13..]
    };
    Some(
        rest.split(' ')
            .filter(|c| !c.is_empty())
            .map(str::to_ascii_uppercase)
            .collect(),
    )
}

/// What follows `tag ` in a tagged line, if the line is tagged with `tag`.
fn tagged<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.strip_prefix(tag)?.strip_prefix(' ')
}

fn is_ok(status: &str) -> bool {
    status.len() >= 2 && status[..2].eq_ignore_ascii_case("OK")
}

/// Sends a command and reads to its tagged answer; returns the untagged lines and the
/// tagged line's status part (`OK …`).
async fn command(io: &mut Lines, tag: &str, cmd: &str) -> Result<(Vec<String>, String), Failure> {
    io.send(format!("{tag} {cmd}\r\n").as_bytes()).await?;
    read_tagged(io, tag).await
}

async fn read_tagged(io: &mut Lines, tag: &str) -> Result<(Vec<String>, String), Failure> {
    let mut untagged = Vec::new();
    loop {
        let line = io.line(LOGIN_TIMEOUT).await?;
        let line = String::from_utf8_lossy(&line).into_owned();
        if let Some(status) = tagged(&line, tag) {
            return Ok((untagged, status.to_owned()));
        }
        if untagged.len() < 100 {
            untagged.push(line);
        }
    }
}

/// Logs in to the backend `t` for `who`; on success the client's tagged answer (with
/// `client_tag`) is in [`Backend::reply`].
pub async fn login(
    ctx: &Ctx,
    t: &Target,
    who: &Client,
    client_tag: &str,
) -> Result<Backend, Failure> {
    let limit = ctx.config.proxy.connect_timeout_secs.duration() + LOGIN_TIMEOUT;
    match tokio::time::timeout(limit, login_steps(ctx, t, who, client_tag)).await {
        Ok(r) => r,
        Err(_) => Err(unavailable("backend login timed out")),
    }
}

async fn login_steps(
    ctx: &Ctx,
    t: &Target,
    who: &Client,
    client_tag: &str,
) -> Result<Backend, Failure> {
    let tcp: Hop = Box::new(super::connect(ctx, t).await?);
    let mut io = Lines::new(tcp);
    let greeting = io
        .line(ctx.config.proxy.connect_timeout_secs.duration())
        .await?;
    let greeting = String::from_utf8_lossy(&greeting).into_owned();
    if !greeting
        .get(..5)
        .is_some_and(|g| g.eq_ignore_ascii_case("* OK "))
    {
        return Err(unavailable(format!(
            "backend greeting: {}",
            greeting.trim_end()
        )));
    }
    let mut caps = capabilities(&greeting);
    let policy = ctx.config.proxy.tls;
    if policy != HopTls::None {
        if caps.is_none() {
            let (lines, _) = command(&mut io, "P0", "CAPABILITY").await?;
            caps = lines.iter().find_map(|l| capabilities(l));
        }
        let offered = caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c == "STARTTLS"));
        if offered {
            let (_, st) = command(&mut io, "P1", "STARTTLS").await?;
            if !is_ok(&st) {
                return Err(unavailable(format!("backend STARTTLS: {}", st.trim_end())));
            }
            // Nothing the backend sent in the clear counts after the handshake.
            io.buf.clear();
            let Lines { io: plain, .. } = io;
            io = Lines::new(super::start_tls(ctx, t, plain).await?);
            let (lines, _) = command(&mut io, "P2", "CAPABILITY").await?;
            caps = lines.iter().find_map(|l| capabilities(l));
        } else if policy == HopTls::Verify {
            return Err(unavailable(
                "backend offers no STARTTLS (proxy.tls = verify)",
            ));
        }
    }
    // The real client, for the backend's logs and authd (believed from trusted proxies).
    let origin = who.client_addr();
    let id = format!(
        "ID ({} {} {} {} {} {} {} {})",
        quoted("x-originating-ip"),
        quoted(&crate::canonical(origin.ip()).to_string()),
        quoted("x-originating-port"),
        quoted(&origin.port().to_string()),
        quoted("x-connected-ip"),
        quoted(&crate::canonical(who.local.ip()).to_string()),
        quoted("x-connected-port"),
        quoted(&who.local.port().to_string()),
    );
    command(&mut io, "P3", &id).await?;
    let sasl_ir = caps
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c == "SASL-IR"));
    let plain = t.plain_b64();
    let (untagged, status) = if sasl_ir {
        command(&mut io, "P4", &format!("AUTHENTICATE PLAIN {plain}")).await?
    } else {
        io.send(b"P4 AUTHENTICATE PLAIN\r\n").await?;
        let line = io.line(LOGIN_TIMEOUT).await?;
        if line.first() == Some(&b'+') {
            io.send(format!("{plain}\r\n").as_bytes()).await?;
            read_tagged(&mut io, "P4").await?
        } else {
            let line = String::from_utf8_lossy(&line).into_owned();
            match tagged(&line, "P4") {
                Some(st) => (Vec::new(), st.to_owned()),
                None => return Err(unavailable("backend did not answer AUTHENTICATE")),
            }
        }
    };
    if !is_ok(&status) {
        // The password was refused there (a lockout, a password changed in between); any
        // other refusal (PRIVACYREQUIRED: the hop needs TLS, UNAVAILABLE, …) is the
        // cluster's problem, not the user's: try again later.
        if status.contains("[AUTHENTICATIONFAILED]") || status.contains("[AUTHORIZATIONFAILED]") {
            return Err(Failure::Refused(status.trim_end().to_owned()));
        }
        return Err(unavailable(format!("backend login: {}", status.trim_end())));
    }
    let mut reply = Vec::new();
    for l in untagged {
        reply.extend_from_slice(l.as_bytes());
    }
    reply.extend_from_slice(client_tag.as_bytes());
    reply.push(b' ');
    reply.extend_from_slice(status.as_bytes());
    let Lines { io, buf } = io;
    Ok(Backend {
        io,
        pending: buf,
        reply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_codes_and_lines() {
        assert_eq!(
            capabilities("* OK [CAPABILITY IMAP4rev1 starttls SASL-IR] ready\r\n").unwrap(),
            ["IMAP4REV1", "STARTTLS", "SASL-IR"]
        );
        assert_eq!(
            capabilities("* CAPABILITY IMAP4rev1 IDLE\r\n").unwrap(),
            ["IMAP4REV1", "IDLE"]
        );
        assert!(capabilities("* OK ready\r\n").is_none());
        assert!(capabilities("* OK [CAPABILITY IMAP4rev1 ready\r\n").is_none());
        assert_eq!(
            tagged("P4 OK [CAPABILITY X] Logged in\r\n", "P4"),
            Some("OK [CAPABILITY X] Logged in\r\n")
        );
        assert_eq!(tagged("P40 OK\r\n", "P4"), None);
        assert!(is_ok("ok done") && !is_ok("NO x") && !is_ok("O"));
    }
}
