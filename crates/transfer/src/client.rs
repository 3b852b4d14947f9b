//! The sending side (`mailctl user move`).

use std::io::{self, BufReader, Read, Write};

use serde::Deserialize;
use serde_json::json;

use crate::wire::{self, read_json, read_manifest, write_json};
use crate::{CHUNK, Entry, Kind, Manifest, Status, TransferError};

/// A connection to a destination's move receiver, authenticated both ways.
pub struct Client<S: Read + Write> {
    conn: BufReader<S>,
    /// Set when a failure left the stream out of step (an I/O or protocol error): every
    /// later call fails at once.
    broken: bool,
}

#[derive(Deserialize)]
struct Greeting {
    greeting: String,
    nonce: String,
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    entries: Option<usize>,
}

impl<S: Read + Write> Client<S> {
    /// Reads the greeting and authenticates both ways: the server must prove it knows the
    /// secret too (so a stranger cannot collect the mail by posing as the destination).
    pub fn handshake(stream: S, secret: &[u8]) -> Result<Self, TransferError> {
        let mut conn = BufReader::with_capacity(CHUNK, stream);
        let greeting: Greeting = read_json(&mut conn)?;
        if greeting.greeting != wire::GREETING {
            return Err(TransferError::Protocol(format!(
                "unknown greeting {:?}",
                greeting.greeting
            )));
        }
        let server_nonce = wire::unhex(&greeting.nonce)
            .filter(|n| n.len() == wire::NONCE_LEN)
            .ok_or_else(|| TransferError::Protocol("bad server nonce".into()))?;
        let client_nonce = wire::nonce()?;
        let mac = wire::client_mac(secret, &server_nonce, &client_nonce);
        write_json(
            conn.get_mut(),
            &json!({"op": "auth", "nonce": wire::hex(&client_nonce), "mac": wire::hex(&mac)}),
        )?;
        conn.get_mut().flush()?;
        let reply: Reply = read_json(&mut conn)?;
        if !reply.ok {
            return Err(TransferError::Auth);
        }
        let proof = reply
            .mac
            .as_deref()
            .and_then(wire::unhex)
            .ok_or_else(|| TransferError::Protocol("no server proof".into()))?;
        if !wire::verify_server_mac(secret, &client_nonce, &server_nonce, &proof) {
            return Err(TransferError::Auth);
        }
        Ok(Self {
            conn,
            broken: false,
        })
    }

    fn check(&self) -> Result<(), TransferError> {
        if self.broken {
            Err(TransferError::Protocol(
                "the connection broke earlier; connect again".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Runs `f`; an error other than a refusal marks the connection broken.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, TransferError>,
    ) -> Result<T, TransferError> {
        self.check()?;
        let result = f(self);
        if let Err(e) = &result
            && !e.connection_usable()
        {
            self.broken = true;
        }
        result
    }

    fn send(&mut self, value: &serde_json::Value) -> Result<(), TransferError> {
        write_json(self.conn.get_mut(), value)?;
        self.conn.get_mut().flush()?;
        Ok(())
    }

    fn reply(&mut self) -> Result<Reply, TransferError> {
        let reply: Reply = read_json(&mut self.conn)?;
        if reply.ok {
            Ok(reply)
        } else {
            Err(TransferError::Remote(
                reply.error.unwrap_or_else(|| "no reason given".into()),
            ))
        }
    }

    fn simple(&mut self, value: serde_json::Value) -> Result<(), TransferError> {
        self.guarded(|c| {
            c.send(&value)?;
            c.reply().map(drop)
        })
    }

    /// Announces the account; the server resolves its home and says what is there.
    pub fn begin(&mut self, address: &str) -> Result<Status, TransferError> {
        self.guarded(|c| {
            c.send(&json!({"op": "begin", "address": address}))?;
            let reply = c.reply()?;
            let count = reply.entries.unwrap_or(0);
            match reply.status.as_deref() {
                Some("fresh") => Ok(Status::Fresh),
                Some("staging") => Ok(Status::Staging(read_manifest(&mut c.conn, count)?)),
                Some("home_exists") => Ok(Status::HomeExists(read_manifest(&mut c.conn, count)?)),
                other => Err(TransferError::Protocol(format!("unknown status {other:?}"))),
            }
        })
    }

    /// Creates a directory in staging (or sets the mode of an existing one).
    pub fn mkdir(&mut self, entry: &Entry) -> Result<(), TransferError> {
        if entry.kind != Kind::Dir {
            return Err(TransferError::Path(format!(
                "{}: not a directory",
                entry.path
            )));
        }
        crate::path::check_path(&entry.path)?;
        self.simple(json!({"op": "mkdir", "entry": entry}))
    }

    /// Sends `entry.size` bytes from `body` in [`CHUNK`]-sized pieces (never the whole file
    /// in memory). When `body` yields fewer or more bytes, the server is told to discard
    /// what it got and the result is [`TransferError::Changed`] (the connection stays usable).
    /// A [`Kind::Symlink`] entry creates the link instead ([`Client::symlink`]; `body` is
    /// not read), so that every `Put` of [`Manifest::diff`] goes through here.
    pub fn put(&mut self, entry: &Entry, body: &mut dyn Read) -> Result<(), TransferError> {
        if entry.kind == Kind::Symlink {
            return self.symlink(entry);
        }
        if entry.kind != Kind::File {
            return Err(TransferError::Path(format!("{}: not a file", entry.path)));
        }
        crate::path::check_path(&entry.path)?;
        self.guarded(|c| match c.send_put(entry, body) {
            // The server refuses some files before their body (no room for it) and ends
            // the connection: its reason is likely waiting to be read.
            Err(TransferError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                match read_json::<_, Reply>(&mut c.conn) {
                    Ok(Reply {
                        ok: false,
                        error: Some(why),
                        ..
                    }) => Err(TransferError::Protocol(format!(
                        "the destination refused {} and closed the connection: {why}",
                        entry.path
                    ))),
                    _ => Err(TransferError::Io(e)),
                }
            }
            other => other,
        })
    }

    /// `put`'s request: header, body, trailer, and the answer.
    fn send_put(&mut self, entry: &Entry, body: &mut dyn Read) -> Result<(), TransferError> {
        let c = self;
        let mut header = entry.clone();
        header.sha256 = None;
        // Header, body and trailer leave in as few writes as possible (one for a small
        // file): one TCP segment or TLS record per request instead of three.
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK);
        write_json(&mut out, &json!({"op": "put", "entry": header}))?;
        let size = entry.size;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        let mut problem: Option<String> = None;
        while sent < size {
            let want = usize::try_from((size - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    problem = Some(format!(
                        "{}: the file ended after {sent} of {size} bytes (it changed)",
                        entry.path
                    ));
                    break;
                }
                Ok(n) => {
                    buffered(c.conn.get_mut(), &mut out, &buf[..n])?;
                    sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    problem = Some(format!("{}: reading it: {e}", entry.path));
                    break;
                }
            }
        }
        if problem.is_some() {
            // Keep the framing: pad to the announced size, then cancel.
            buf.fill(0);
            while sent < size {
                let n = usize::try_from((size - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
                buffered(c.conn.get_mut(), &mut out, &buf[..n])?;
                sent += n as u64;
            }
        } else {
            let mut one = [0u8; 1];
            let extra = loop {
                match body.read(&mut one) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        problem = Some(format!("{}: reading it: {e}", entry.path));
                        break 0;
                    }
                }
            };
            if extra > 0 {
                problem = Some(format!(
                    "{}: the file is longer than {size} bytes (it changed)",
                    entry.path
                ));
            }
        }
        let trailer = match &problem {
            None => json!({"done": true}),
            Some(why) => json!({"done": false, "error": why}),
        };
        let mut line = Vec::new();
        write_json(&mut line, &trailer)?;
        buffered(c.conn.get_mut(), &mut out, &line)?;
        c.conn.get_mut().write_all(&out)?;
        c.conn.get_mut().flush()?;
        let result = c.reply();
        match problem {
            Some(why) => {
                // The server's answer to a cancelled put is a refusal; ours is the news.
                match result {
                    Ok(_) | Err(TransferError::Remote(_)) => Err(TransferError::Changed(why)),
                    Err(e) => Err(e),
                }
            }
            None => result.map(drop),
        }
    }

    /// Creates (or replaces) a symbolic link in staging, pointing at `entry.target`, which
    /// must stay inside the home ([`crate::check_link_target`], checked here and again by
    /// the server). The link is never followed.
    pub fn symlink(&mut self, entry: &Entry) -> Result<(), TransferError> {
        if entry.kind != Kind::Symlink {
            return Err(TransferError::Path(format!(
                "{}: not a symbolic link",
                entry.path
            )));
        }
        let Some(target) = entry.target.as_deref() else {
            return Err(TransferError::Path(format!(
                "{}: a symbolic link without a target",
                entry.path
            )));
        };
        crate::path::check_link_target(&entry.path, target)?;
        self.simple(json!({"op": "symlink", "entry": entry}))
    }

    /// Removes a file, a symbolic link (not what it points at) or an empty directory from
    /// staging (a missing one is fine).
    pub fn delete(&mut self, path: &str) -> Result<(), TransferError> {
        crate::path::check_path(path)?;
        self.simple(json!({"op": "delete", "path": path}))
    }

    /// The staging directory's manifest, with hashes.
    pub fn verify(&mut self) -> Result<Manifest, TransferError> {
        self.guarded(|c| {
            c.send(&json!({"op": "verify"}))?;
            let reply = c.reply()?;
            read_manifest(&mut c.conn, reply.entries.unwrap_or(0))
        })
    }

    /// fsyncs everything in staging, renames staging → home, fsyncs the parent.
    pub fn commit(&mut self) -> Result<(), TransferError> {
        self.simple(json!({"op": "commit"}))
    }

    /// Removes the staging directory; with `home_matching: Some(manifest)` (hashed) also a
    /// committed home whose hashed manifest equals it (a move committed but never switched).
    /// A home that differs is left alone and reported as a refusal.
    pub fn abort(&mut self, home_matching: Option<&Manifest>) -> Result<(), TransferError> {
        self.guarded(|c| {
            match home_matching {
                None => c.send(&json!({"op": "abort", "entries": null}))?,
                Some(m) => wire::write_manifest(
                    &mut c.conn,
                    &json!({"op": "abort", "entries": m.entries.len()}),
                    m,
                )?,
            }
            c.reply().map(drop)
        })
    }

    /// The stream, e.g. to shut it down.
    pub fn get_mut(&mut self) -> &mut S {
        self.conn.get_mut()
    }
}

/// Appends `bytes` to `out`, writing `out` first when both would make more than a
/// [`CHUNK`] (so no write is larger than a chunk, and small requests leave in one).
fn buffered<W: Write>(w: &mut W, out: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    if !out.is_empty() && out.len() + bytes.len() > CHUNK {
        w.write_all(out)?;
        out.clear();
    }
    out.extend_from_slice(bytes);
    Ok(())
}
