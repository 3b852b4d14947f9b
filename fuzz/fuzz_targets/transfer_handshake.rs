//! transfer: the move receiver (`postern_transfer::serve`, imapd's `[proxy] move_listen`)
//! fed a stranger's bytes before authentication: the greeting is sent, the `auth` line is
//! parsed and checked. Without the secret nothing gets past it: no home is ever resolved,
//! nothing is written to disk, the server answers at most one refusal and stops.
#![no_main]

use std::cell::Cell;
use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use postern_transfer::{MAX_LINE, TransferError, serve};

const SECRET: &[u8] = b"the-fuzzers-shared-secret-0123456789abcdef";

/// The stranger's side: what it sends, in chunks of `chunk` bytes, and what it gets.
struct Stranger<'a> {
    input: &'a [u8],
    chunk: usize,
    out: Vec<u8>,
}

impl Read for Stranger<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Stranger<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let resolved = Cell::new(0usize);
    let home_of = |_: &str| {
        resolved.set(resolved.get() + 1);
        Err("no homes here".to_owned())
    };
    let mut peer = Stranger {
        input,
        chunk: usize::from(chunk).max(1),
        out: Vec::new(),
    };
    let result = serve(&mut peer, SECRET, &home_of);
    assert_eq!(
        resolved.get(),
        0,
        "a home was resolved before authentication"
    );
    match result {
        Err(TransferError::Auth | TransferError::Protocol(_) | TransferError::Io(_)) => {}
        other => panic!("unauthenticated bytes gave {other:?}"),
    }
    // The greeting and at most one refusal.
    let lines = peer
        .out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines <= 2, "{lines} lines sent to a stranger");
    assert!(
        peer.out.len() < 512,
        "{} bytes sent to a stranger",
        peer.out.len()
    );
    // Never more than one line (plus the buffer) was looked at.
    let consumed = input.len() - peer.input.len();
    assert!(
        consumed <= MAX_LINE + 1 + postern_transfer::CHUNK,
        "{consumed} bytes read"
    );
});
