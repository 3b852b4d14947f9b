//! Message bodies: `DATA` (dot-terminated text) and `BDAT` (counted chunks).
//!
//! smtp-proto's `DataReceiver` does not fit: it misses a `.` line right at the start of the
//! data (so `DATA\r\n.\r\n` never ends), drops the dot of a bare-LF `.\n` line, keeps bare LFs
//! and knows no limits. [`DotReader`] is our own: the end of data is `CRLF . CRLF` and nothing
//! else, with the start of the data counting as after a CRLF; a `.` line after a bare LF, or
//! ended by a bare LF, is message content (SMTP smuggling, 2023); bare LFs become CRLF, bare
//! CRs are kept; a leading dot is removed when more characters follow it (RFC 5321 §4.5.2).
//! Limits are checked as bytes pass: a message over a limit is read to its end but not stored,
//! so the session stays in step, and is refused then.
//!
//! `BDAT` chunks are read with smtp-proto's `BdatReceiver`, and discarded with its
//! `DummyDataReceiver` once the message is over the size limit.

use smtp_proto::request::receiver::{BdatReceiver, DummyDataReceiver};

use crate::reply::Reply;

/// Why a message is refused once its end has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooBig,
    LineTooLong,
    Nul,
    /// A bare CR or LF in `DATA` while [`SessionConfig::reject_bare_newline`] is on.
    ///
    /// [`SessionConfig::reject_bare_newline`]: crate::SessionConfig::reject_bare_newline
    BareNewline,
}

impl BodyError {
    pub(crate) fn reply(self) -> Reply {
        match self {
            Self::TooBig => Reply::message_too_big(),
            Self::LineTooLong => Reply::new(552, (5, 3, 4), "Message line too long"),
            Self::Nul => Reply::new(554, (5, 6, 0), "Message contains NUL characters"),
            Self::BareNewline => Reply::new(
                550,
                (5, 5, 2),
                "Message refused: bare <CR> or <LF> received; lines must end in <CR><LF> (RFC 5321 2.3.8)",
            ),
        }
    }

    /// Keeps the first error by priority: size, then line length, then NUL, then bare newlines.
    fn merge(slot: &mut Option<Self>, new: Self) {
        if slot.is_none_or(|old| (new as u8) < (old as u8)) {
            *slot = Some(new);
        }
    }
}

/// Reads a `DATA` body up to `CRLF . CRLF`.
pub(crate) struct DotReader {
    state: LinePos,
    message: Vec<u8>,
    /// Octets of the message so far, stored or not.
    size: u64,
    max_size: u64,
    max_line: usize,
    line_len: usize,
    /// Refuse bare CR and bare LF instead of keeping / normalising them.
    forbid_bare: bool,
    error: Option<BodyError>,
}

/// Where in a line we are.
#[derive(Clone, Copy)]
enum LinePos {
    /// At the start of a line; `crlf`: the previous line ended in CRLF (or this is the start).
    LineStart { crlf: bool },
    /// A `.` at the start of a line, not yet stored.
    Dot { crlf: bool },
    /// `.` and CR at the start of a line.
    DotCr { crlf: bool },
    /// Inside a line.
    Text,
    /// A CR inside a line, not yet stored.
    Cr,
}

impl DotReader {
    /// `forbid_bare`: a bare CR or LF anywhere makes the message [`BodyError::BareNewline`].
    pub(crate) fn new(max_size: u64, max_line: usize, forbid_bare: bool) -> Self {
        Self {
            state: LinePos::LineStart { crlf: true },
            message: Vec::new(),
            size: 0,
            max_size,
            max_line,
            line_len: 0,
            forbid_bare,
            error: None,
        }
    }

    /// Takes the message bytes stored so far (for a driver that spools them as they come);
    /// [`DotReader::finish`] then returns only the rest.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.message)
    }

    /// Reads from `input`; returns the bytes consumed and whether the end of data was read.
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        // What is stored is at most what arrived (plus a CR per bare LF): room for it now
        // rather than a reallocation and copy at every doubling (~10 for a 5 KiB message).
        // Bounded by the bytes already received, so a client cannot make it reserve more.
        if self.error.is_none() {
            self.message.reserve(input.len());
        }
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.state {
                LinePos::LineStart { crlf } => {
                    if b == b'.' {
                        self.state = LinePos::Dot { crlf };
                        i += 1;
                    } else {
                        self.state = LinePos::Text;
                    }
                }
                LinePos::Dot { crlf } => match b {
                    b'\r' => {
                        self.state = LinePos::DotCr { crlf };
                        i += 1;
                    }
                    b'\n' => {
                        // `.` ended by a bare LF: a line of its own, not the end.
                        self.store(b".");
                        self.bare();
                        self.end_line(false);
                        i += 1;
                    }
                    // Other characters follow: the dot was stuffing.
                    _ => self.state = LinePos::Text,
                },
                LinePos::DotCr { crlf } => {
                    if b == b'\n' {
                        i += 1;
                        if crlf {
                            return (i, true);
                        }
                        // `\n.\r\n`: the line before ended in a bare LF; content.
                        self.store(b".");
                        self.end_line(true);
                    } else {
                        // `.` CR and more: the dot was stuffing, the CR is content.
                        self.state = LinePos::Cr;
                    }
                }
                LinePos::Text => {
                    let rest = &input[i..];
                    let run = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                    if run > 0 {
                        self.store(&rest[..run]);
                        i += run;
                        continue;
                    }
                    i += 1;
                    match b {
                        b'\r' => self.state = LinePos::Cr,
                        b'\n' => {
                            self.bare();
                            self.end_line(false);
                        }
                        _ => {
                            self.line_len += 1;
                            BodyError::merge(&mut self.error, BodyError::Nul);
                            self.message = Vec::new();
                        }
                    }
                }
                LinePos::Cr => match b {
                    b'\n' => {
                        self.end_line(true);
                        i += 1;
                    }
                    b'\r' => {
                        self.bare();
                        self.store(b"\r");
                        i += 1;
                    }
                    _ => {
                        self.bare();
                        self.store(b"\r");
                        self.state = LinePos::Text;
                    }
                },
            }
        }
        (i, false)
    }

    /// The message, or why it is refused.
    pub(crate) fn finish(self) -> Result<Vec<u8>, BodyError> {
        self.error.map_or(Ok(self.message), Err)
    }

    /// A bare CR or LF was read.
    fn bare(&mut self) {
        if self.forbid_bare {
            BodyError::merge(&mut self.error, BodyError::BareNewline);
            self.message = Vec::new();
        }
    }

    fn end_line(&mut self, crlf: bool) {
        if self.line_len > self.max_line {
            BodyError::merge(&mut self.error, BodyError::LineTooLong);
            self.message = Vec::new();
        }
        self.line_len = 0;
        self.state = LinePos::LineStart { crlf };
        self.append(b"\r\n");
    }

    fn store(&mut self, bytes: &[u8]) {
        self.line_len += bytes.len();
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.max_size {
            BodyError::merge(&mut self.error, BodyError::TooBig);
            self.message = Vec::new();
        }
        if self.error.is_none() {
            self.message.extend_from_slice(bytes);
        }
    }
}

/// The `BDAT` chunks of one message.
pub(crate) struct Chunks {
    message: Vec<u8>,
    /// Octets of the message so far (taken or not).
    size: u64,
    max_size: u64,
    check_nul: bool,
    error: Option<BodyError>,
    /// The chunk being read and the octets left in it.
    current: Option<(Chunk, usize)>,
}

enum Chunk {
    Store(BdatReceiver),
    Discard(DummyDataReceiver),
}

impl Chunks {
    /// `check_nul`: refuse NUL octets (all bodies but `BINARYMIME`).
    pub(crate) fn new(max_size: u64, check_nul: bool) -> Self {
        Self {
            message: Vec::new(),
            size: 0,
            max_size,
            check_nul,
            error: None,
            current: None,
        }
    }

    /// Takes the message bytes stored so far (see [`DotReader::take`]).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.message)
    }

    /// Starts reading a chunk of `size` octets.
    pub(crate) fn start(&mut self, size: usize) {
        let total = self.size.saturating_add(size as u64);
        self.size = total;
        if self.error.is_none() && total > self.max_size {
            BodyError::merge(&mut self.error, BodyError::TooBig);
            self.message = Vec::new();
        }
        let chunk = if self.error.is_some() {
            Chunk::Discard(DummyDataReceiver::new_bdat(size))
        } else {
            Chunk::Store(BdatReceiver::new(size, false))
        };
        self.current = Some((chunk, size));
    }

    /// Reads from `input`; returns the bytes consumed and whether the chunk is complete.
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let Some((chunk, left)) = &mut self.current else {
            return (0, true);
        };
        let mut bytes = input.iter();
        let before = self.message.len();
        let done = match chunk {
            Chunk::Discard(receiver) => receiver.ingest(&mut bytes),
            Chunk::Store(receiver) => receiver.ingest(&mut bytes, &mut self.message),
        };
        let consumed = input.len() - bytes.len();
        *left -= consumed.min(*left);
        if self.check_nul
            && self
                .message
                .get(before..)
                .is_some_and(|new| new.contains(&0))
        {
            BodyError::merge(&mut self.error, BodyError::Nul);
            self.message = Vec::new();
            // Read the rest of this chunk without keeping it.
            *chunk = Chunk::Discard(DummyDataReceiver::new_bdat(*left));
        }
        if done {
            self.current = None;
        }
        (consumed, done)
    }

    /// The message, or why it is refused.
    pub(crate) fn finish(self) -> Result<Vec<u8>, BodyError> {
        self.error.map_or(Ok(self.message), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the result and the unread rest.
    fn read(input: &[u8], step: usize, max: u64) -> (Result<Vec<u8>, BodyError>, Vec<u8>) {
        let mut reader = DotReader::new(max, 20, false);
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let (used, done) = reader.feed(&input[pos..end]);
            pos += used;
            if done {
                return (reader.finish(), input[pos..].to_vec());
            }
            assert_eq!(pos, end, "a reader consumes all it is given until the end");
        }
        panic!("no end of data in {input:?}");
    }

    fn body(input: &str) -> (String, String) {
        let mut first = None;
        for step in 1..=input.len() {
            let (message, rest) = read(input.as_bytes(), step, 1000);
            let got = (
                String::from_utf8(message.unwrap()).unwrap(),
                String::from_utf8(rest).unwrap(),
            );
            assert_eq!(
                first.get_or_insert_with(|| got.clone()),
                &got,
                "step {step}"
            );
        }
        first.unwrap()
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(body(".\r\n"), ("".into(), "".into()));
        assert_eq!(
            body("..\r\n.\r\nQUIT\r\n"),
            (".\r\n".into(), "QUIT\r\n".into())
        );
        assert_eq!(
            body("a\r\n..b\r\n.c\r\n\r\n.\r\n"),
            ("a\r\n.b\r\nc\r\n\r\n".into(), "".into())
        );
        assert_eq!(body("...\r\n.\r\n"), ("..\r\n".into(), "".into()));
    }

    #[test]
    fn line_endings() {
        assert_eq!(body("a\nb\r\n.\r\n"), ("a\r\nb\r\n".into(), "".into()));
        assert_eq!(body("a\rb\r\r\n.\r\n"), ("a\rb\r\r\n".into(), "".into()));
        assert_eq!(body(".\rx\r\n.\r\n"), ("\rx\r\n".into(), "".into()));
    }

    #[test]
    fn smuggling() {
        for (input, message) in [
            ("a\n.\nMAIL\r\n.\r\n", "a\r\n.\r\nMAIL\r\n"),
            ("a\n.\r\nMAIL\r\n.\r\n", "a\r\n.\r\nMAIL\r\n"),
            ("a\r\n.\nMAIL\r\n.\r\n", "a\r\n.\r\nMAIL\r\n"),
            ("a\r.\r\nMAIL\r\n.\r\n", "a\r.\r\nMAIL\r\n"),
            ("a\r\n.\rMAIL\r\n.\r\n", "a\r\n\rMAIL\r\n"),
            (".\n.\r\n.\r\n", ".\r\n.\r\n"),
        ] {
            assert_eq!(body(input), (message.into(), "".into()), "{input:?}");
        }
    }

    #[test]
    fn limits() {
        let (r, rest) = read(b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n", 3, 20);
        assert_eq!(
            (r, rest.as_slice()),
            (Err(BodyError::TooBig), &b"NOOP\r\n"[..])
        );
        let (r, _) = read(b"0123456789\r\n.\r\n", 3, 12);
        assert_eq!(r, Ok(b"0123456789\r\n".to_vec()));
        let long = format!("{}\r\n.\r\n", "x".repeat(21));
        assert_eq!(
            read(long.as_bytes(), 5, 1000).0,
            Err(BodyError::LineTooLong)
        );
        let ok = format!("{}\r\n.\r\n", "x".repeat(20));
        assert!(read(ok.as_bytes(), 5, 1000).0.is_ok());
        assert_eq!(read(b"a\0b\r\n.\r\n", 1, 1000).0, Err(BodyError::Nul));
        let both = format!("\0{}\r\n.\r\n", "x".repeat(30));
        assert_eq!(read(both.as_bytes(), 7, 25).0, Err(BodyError::TooBig));
    }

    #[test]
    fn chunks() {
        let mut c = Chunks::new(10, true);
        c.start(4);
        assert_eq!(c.feed(b"ab"), (2, false));
        assert_eq!(c.feed(b"cdEF"), (2, true));
        c.start(0);
        assert_eq!(c.feed(b""), (0, true));
        assert_eq!(c.finish(), Ok(b"abcd".to_vec()));

        let mut c = Chunks::new(5, true);
        c.start(4);
        assert_eq!(c.feed(b"abcd"), (4, true));
        c.start(4);
        assert_eq!(c.feed(b"efghNOOP"), (4, true));
        assert_eq!(c.finish(), Err(BodyError::TooBig));

        let mut c = Chunks::new(100, true);
        c.start(6);
        assert_eq!(c.feed(b"a\0c"), (3, false));
        assert_eq!(c.feed(b"defQUIT"), (3, true));
        assert_eq!(c.finish(), Err(BodyError::Nul));

        let mut c = Chunks::new(100, false);
        c.start(3);
        assert_eq!(c.feed(b"a\0c"), (3, true));
        assert_eq!(c.finish(), Ok(b"a\0c".to_vec()));
    }
}
