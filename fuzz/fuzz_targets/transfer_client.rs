//! transfer: the sending side (`postern_transfer::Client`, run by `mailctl user move`)
//! against a malicious or broken destination that knows the shared secret (the harness
//! answers the handshake correctly), then sends arbitrary bytes as its replies to `begin`,
//! `mkdir`, `put`, `delete`, `symlink`, `verify`, `abort` and `commit`. Whatever it sends:
//! no panic, no loop (every call ends once the bytes are used up), manifests handed back
//! hold only paths that pass `check_path`, symbolic links only with a target that stays
//! inside the home (and targets only on links), at most `MAX_ENTRIES` entries, and the
//! client writes
//! nothing but its own requests (the client never writes files at all).
//!
//! Input: one byte choosing which calls are made (bit per call), then the server's bytes
//! after its handshake reply.
#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use postern_transfer::{Client, Entry, Kind, MAX_ENTRIES, Manifest, Status, check_path};

const SECRET: &[u8] = b"the-fuzzers-shared-secret-0123456789abcdef";
const SERVER_NONCE: [u8; 32] = [9u8; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The destination: a correct greeting and proof, then the fuzzer's bytes.
struct Server<'a> {
    input: Vec<u8>,
    pos: usize,
    rest: &'a [u8],
    out: Vec<u8>,
    proved: bool,
}

impl Read for Server<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.proved && self.pos == self.input.len() && !self.out.is_empty() {
            // The client's auth line is out: prove the secret over both nonces.
            let line = std::str::from_utf8(&self.out).expect("UTF-8 auth line");
            let v: serde_json::Value =
                serde_json::from_str(line.lines().next().expect("an auth line")).expect("JSON");
            let client_nonce = unhex(v["nonce"].as_str().expect("a nonce"));
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
            let mac = ring::hmac::sign(
                &key,
                &[
                    b"postern-move server".as_slice(),
                    &client_nonce,
                    &SERVER_NONCE,
                ]
                .concat(),
            );
            self.input.extend_from_slice(
                format!("{{\"ok\":true,\"mac\":\"{}\"}}\n", hex(mac.as_ref())).as_bytes(),
            );
            self.input.extend_from_slice(self.rest);
            self.proved = true;
        }
        let left = &self.input[self.pos..];
        let n = buf.len().min(left.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check(m: &Manifest) {
    assert!(m.entries.len() <= MAX_ENTRIES);
    for e in &m.entries {
        check_path(&e.path).expect("a manifest path the client accepted");
        // A link only with a target that stays inside the home; a target only on a link.
        match (&e.kind, &e.target) {
            (Kind::Symlink, Some(t)) => assert!(
                stays_inside(&e.path, t),
                "{}: a link to {t:?} accepted",
                e.path
            ),
            (Kind::Symlink, None) => panic!("{}: a link without a target accepted", e.path),
            (_, Some(t)) => panic!("{}: a target {t:?} on a {:?} accepted", e.path, e.kind),
            (_, None) => {}
        }
    }
}

/// Whether the link at `path` (relative to the root) pointing at `target` stays strictly
/// inside the root once `..` is resolved lexically from the link's directory (an
/// independent statement of the rule, looser than `check_link_target`'s).
fn stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains(['\0', '\\']) {
        return false;
    }
    let mut at: Vec<&str> = path.split('/').collect();
    at.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            name => at.push(name),
        }
    }
    !at.is_empty()
}

fn entry(path: &str, kind: Kind, size: u64) -> Entry {
    Entry {
        path: path.to_owned(),
        kind,
        size,
        mtime: 1_700_000_000,
        mode: 0o600,
        sha256: None,
        target: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&calls, rest)) = data.split_first() else {
        return;
    };
    let mut server = Server {
        input: format!(
            "{{\"greeting\":\"postern-move 1\",\"nonce\":\"{}\"}}\n",
            hex(&SERVER_NONCE)
        )
        .into_bytes(),
        pos: 0,
        rest,
        out: Vec::new(),
        proved: false,
    };
    let mut client = Client::handshake(&mut server, SECRET).expect("the handshake succeeds");
    let mut sent_budget = 4096usize;
    if calls & 1 != 0
        && let Ok(status) = client.begin("bob@example.test")
    {
        match &status {
            Status::Fresh => {}
            Status::Staging(m) | Status::HomeExists(m) => check(m),
        }
    }
    if calls & 2 != 0 {
        let _ = client.mkdir(&entry("cur", Kind::Dir, 0));
    }
    if calls & 4 != 0 {
        let body = b"Subject: x\r\n\r\nbody\r\n";
        let _ = client.put(
            &entry("cur/1.host:2,S", Kind::File, body.len() as u64),
            &mut &body[..],
        );
        sent_budget += body.len();
    }
    if calls & 8 != 0 {
        let _ = client.delete("new/2.host");
        let _ = client.symlink(&Entry {
            kind: Kind::Symlink,
            mode: 0o777,
            target: Some("sieve/x.sieve".into()),
            ..entry(".dovecot.sieve", Kind::Symlink, 0)
        });
    }
    let mut verified = None;
    if calls & 16 != 0
        && let Ok(m) = client.verify()
    {
        check(&m);
        verified = Some(m);
    }
    if calls & 32 != 0 {
        let small = Manifest {
            entries: vec![entry("cur", Kind::Dir, 0)],
        };
        let m = verified
            .as_ref()
            .filter(|_| calls & 128 != 0)
            .unwrap_or(&small);
        sent_budget += m
            .entries
            .iter()
            .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len() + 1))
            .sum::<usize>();
        let _ = client.abort(Some(m));
    }
    if calls & 64 != 0 {
        let _ = client.commit();
    }
    drop(client);
    // Only its own requests (and the echo of a verified manifest in an abort).
    assert!(
        server.out.len() <= sent_budget + 4096,
        "the client wrote {} bytes",
        server.out.len()
    );
});
