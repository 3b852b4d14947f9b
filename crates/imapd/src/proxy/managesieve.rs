//! Logging in to a backend's ManageSieve (RFC 5804) the way Dovecot's managesieve-login
//! proxy does (Pigeonhole's `managesieve-proxy.c`): the greeting's capabilities, STARTTLS
//! per `[proxy] tls` (then the capabilities again, §2.2), `XCLIENT ADDR= PORT=` with the
//! real client when the backend offers `XCLIENT` (it offers it only to trusted proxies;
//! the login goes on if it is refused), then `AUTHENTICATE "PLAIN"` with the user's
//! credentials as the initial response.
//!
//! The backend's `OK` line is the client's answer to its AUTHENTICATE; after it the
//! client talks to the backend, so a `CAPABILITY` shows the backend's list (with `OWNER`).
//! A PLAIN login negotiates no security layer, so neither side sends capabilities
//! unasked after it (§2.1).

use postern_config::HopTls;
use tokio::io::AsyncReadExt as _;

use super::{Backend, Failure, Hop, LOGIN_TIMEOUT, Lines, MAX_LINE, Target, unavailable};
use crate::Ctx;
use crate::login::Client;

/// What a backend's greeting (or its capabilities after STARTTLS) offered.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    starttls: bool,
    xclient: bool,
    /// The SASL mechanisms (upper case); empty before TLS on a backend that wants it.
    sasl: Vec<String>,
}

/// The first string of a capability line (`"NAME" ["value"]`), upper case, and its
/// value.
fn capability(line: &str) -> Option<(String, Option<String>)> {
    let mut strings = quoted_strings(line);
    let name = strings.next()?.to_ascii_uppercase();
    Some((name, strings.next()))
}

/// The quoted strings of a line, unescaped (`\"`, `\\`).
fn quoted_strings(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = line.chars();
    std::iter::from_fn(move || {
        chars.by_ref().find(|&c| c == '"')?;
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(s),
                '\\' => s.push(chars.next()?),
                c => s.push(c),
            }
        }
        None
    })
}

/// The response a line is (`OK`, `NO`, `BYE`, any case), if it is one.
fn response(line: &str) -> Option<&'static str> {
    let word = line
        .split([' ', '\r', '\n'])
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    ["OK", "NO", "BYE"].into_iter().find(|r| *r == word)
}

/// Reads one response: a line, and when it ends in a literal (`{n}` or `{n+}`) the
/// literal and the rest of the line too (a `NO` text may be one); at most [`MAX_LINE`].
async fn read_response(io: &mut Lines) -> Result<String, Failure> {
    let mut all = io.line(LOGIN_TIMEOUT).await?;
    while let Some(n) = literal_at_end(&all) {
        if all.len() + n > MAX_LINE {
            return Err(unavailable("backend response too long"));
        }
        let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
        while io.buf.len() < n {
            let mut chunk = [0u8; 4096];
            let got = tokio::time::timeout_at(deadline, io.io.read(&mut chunk))
                .await
                .map_err(|_| unavailable("backend timed out"))?
                .map_err(unavailable)?;
            if got == 0 {
                return Err(unavailable("backend closed the connection"));
            }
            io.buf.extend_from_slice(&chunk[..got]);
        }
        all.extend(io.buf.drain(..n));
        // The rest of the line after the literal.
        let rest = io.line(LOGIN_TIMEOUT).await?;
        all.extend_from_slice(&rest);
        if all.len() > MAX_LINE {
            return Err(unavailable("backend response too long"));
        }
    }
    Ok(String::from_utf8_lossy(&all).into_owned())
}

/// The size of the literal a line announces at its end (`{12}\r\n`, `{12+}\r\n`).
fn literal_at_end(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = std::str::from_utf8(&line[open + 1..]).ok()?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads capability lines up to the response that ends them; `Err` unless it is `OK`.
async fn read_capabilities(io: &mut Lines) -> Result<Offer, Failure> {
    let mut offer = Offer::default();
    for _ in 0..100 {
        let line = read_response(io).await?;
        if let Some(r) = response(&line) {
            if r != "OK" {
                return Err(unavailable(format!(
                    "backend greeting: {}",
                    line.trim_end()
                )));
            }
            return Ok(offer);
        }
        match capability(&line) {
            Some((name, _)) if name == "STARTTLS" => offer.starttls = true,
            Some((name, _)) if name == "XCLIENT" => offer.xclient = true,
            Some((name, Some(v))) if name == "SASL" => {
                offer.sasl = v
                    .split(' ')
                    .filter(|m| !m.is_empty())
                    .map(str::to_ascii_uppercase)
                    .collect();
            }
            Some(_) => {}
            None => {
                return Err(unavailable(format!(
                    "backend sent no capability line: {}",
                    line.trim_end()
                )));
            }
        }
    }
    Err(unavailable("backend sent too many capability lines"))
}

/// Logs in to the backend `t` for `who`; on success [`Backend::reply`] is the backend's
/// `OK` line, the client's answer to its AUTHENTICATE.
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
    let greeting = tokio::time::timeout(
        ctx.config.proxy.connect_timeout_secs.duration(),
        read_capabilities(&mut io),
    )
    .await
    .map_err(|_| unavailable("backend greeting timed out"))??;
    let mut offer = greeting;
    let policy = ctx.config.proxy.tls;
    if policy != HopTls::None {
        if offer.starttls {
            io.send(b"STARTTLS\r\n").await?;
            let answer = read_response(&mut io).await?;
            if response(&answer) != Some("OK") {
                return Err(unavailable(format!(
                    "backend STARTTLS: {}",
                    answer.trim_end()
                )));
            }
            // Nothing the backend sent in the clear counts after the handshake.
            io.buf.clear();
            let Lines { io: plain, .. } = io;
            io = Lines::new(super::start_tls(ctx, t, plain).await?);
            offer = read_capabilities(&mut io).await?;
        } else if policy == HopTls::Verify {
            return Err(unavailable(
                "backend offers no STARTTLS (proxy.tls = verify)",
            ));
        }
    }
    // The real client, for the backend's logs and authd; only a backend that trusts us
    // offers XCLIENT (Pigeonhole's convention, which Postern's ManageSieve follows for
    // `[imapd] proxy_networks`).
    if offer.xclient {
        let origin = who.client_addr();
        let xclient = format!(
            "XCLIENT ADDR={} PORT={}\r\n",
            crate::canonical(origin.ip()),
            origin.port()
        );
        io.send(xclient.as_bytes()).await?;
        let answer = read_response(&mut io).await?;
        match response(&answer) {
            Some("OK") => {}
            Some("NO") => {
                tracing::debug!(backend = %t.host, answer = %answer.trim_end(), "managesieve backend refused our XCLIENT");
            }
            _ => {
                return Err(unavailable(format!(
                    "backend XCLIENT: {}",
                    answer.trim_end()
                )));
            }
        }
    }
    if !offer.sasl.iter().any(|m| m == "PLAIN") {
        // No mechanism before TLS (a backend that wants it, with proxy.tls = none), or none
        // we can pass a password with: the cluster's problem.
        return Err(unavailable(format!(
            "backend offers no SASL PLAIN (it offers {:?}; TLS required?)",
            offer.sasl.join(" ")
        )));
    }
    // Base64 needs no escaping inside a quoted string.
    let command = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", t.plain_b64());
    io.send(command.as_bytes()).await?;
    let answer = read_response(&mut io).await?;
    match response(&answer) {
        Some("OK") => {}
        Some("NO") => {
            let text = answer.trim_end().to_owned();
            // Only a refused password is the user's problem; a temporary failure
            // (TRYLATER), TLS wanted on the hop (ENCRYPT-NEEDED) or any other code is the
            // cluster's.
            let code = text[2..].trim_start().starts_with('(');
            if !code {
                return Err(Failure::Refused(text));
            }
            return Err(unavailable(format!("backend login: {text}")));
        }
        // A challenge (PLAIN has none once the initial response is sent), BYE, anything else.
        _ => {
            return Err(unavailable(format!("backend login: {}", answer.trim_end())));
        }
    }
    let Lines { io, buf } = io;
    Ok(Backend {
        io,
        pending: buf,
        reply: answer.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_lines_and_responses() {
        assert_eq!(
            capability("\"SASL\" \"PLAIN LOGIN\"\r\n"),
            Some(("SASL".into(), Some("PLAIN LOGIN".into())))
        );
        assert_eq!(
            capability("\"starttls\"\r\n"),
            Some(("STARTTLS".into(), None))
        );
        assert_eq!(
            capability("\"IMPLEMENTATION\" \"Dove\\\"cot\\\\ x\"\r\n"),
            Some(("IMPLEMENTATION".into(), Some("Dove\"cot\\ x".into())))
        );
        assert_eq!(capability("OK\r\n"), None);
        assert_eq!(response("OK \"Logged in.\"\r\n"), Some("OK"));
        assert_eq!(response("ok\r\n"), Some("OK"));
        assert_eq!(response("NO (TRYLATER) \"x\"\r\n"), Some("NO"));
        assert_eq!(response("BYE \"x\"\r\n"), Some("BYE"));
        assert_eq!(response("\"OK\"\r\n"), None);
        assert_eq!(response("OKAY\r\n"), None);
        assert_eq!(literal_at_end(b"NO {12}\r\n"), Some(12));
        assert_eq!(literal_at_end(b"NO {3+}\r\n"), Some(3));
        assert_eq!(literal_at_end(b"NO \"{3}\"\r\n"), None);
        assert_eq!(literal_at_end(b"NO {}\r\n"), None);
        assert_eq!(literal_at_end(b"NO {99999999999}\r\n"), None);
    }

    /// A backend's answers in a row, read through `Lines` (a literal with a line end in it
    /// stays one response).
    #[tokio::test]
    async fn greeting_and_literal_responses() {
        let (mut backend, hop) = tokio::io::duplex(4096);
        let mut io = Lines::new(Box::new(hop));
        use tokio::io::AsyncWriteExt as _;
        backend
            .write_all(
                b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n\"SIEVE\" \"fileinto\"\r\n\
                  \"SASL\" \"plain login\"\r\n\"STARTTLS\"\r\n\"XCLIENT\"\r\n\"VERSION\" \"1.0\"\r\n\
                  OK \"ready\"\r\nNO {7}\r\nab\r\ncd \"x\"\r\nOK\r\n",
            )
            .await
            .unwrap();
        let offer = read_capabilities(&mut io).await.unwrap();
        assert_eq!(
            offer,
            Offer {
                starttls: true,
                xclient: true,
                sasl: vec!["PLAIN".into(), "LOGIN".into()],
            }
        );
        assert_eq!(
            read_response(&mut io).await.unwrap(),
            "NO {7}\r\nab\r\ncd \"x\"\r\n"
        );
        assert_eq!(read_response(&mut io).await.unwrap(), "OK\r\n");
        // A greeting that ends in NO or BYE is no backend to use.
        backend
            .write_all(b"\"SASL\" \"\"\r\nBYE \"full\"\r\n")
            .await
            .unwrap();
        assert!(matches!(
            read_capabilities(&mut io).await,
            Err(Failure::Unavailable(_))
        ));
    }
}
