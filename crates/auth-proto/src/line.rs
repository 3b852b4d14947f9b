//! An incremental LF line framer with a maximum line length.
//!
//! Push whatever a read returned with [`LineBuffer::push`], then call
//! [`LineBuffer::next_line`] (or [`LineBuffer::next_bytes`]) until it gives `None`: that means
//! "read more", never an error. Used that way the buffer holds at most `max` bytes plus one
//! read chunk, however long the lines a peer sends.
//!
//! A line longer than `max` gives [`LineError::TooLong`] once; the rest of it, up to and
//! including its LF, is thrown away as it arrives, and the lines after it come out as usual.
//! A line that is not UTF-8 gives [`LineError::InvalidUtf8`] from `next_line` and
//! does not affect the next one. What to answer to either is the caller's business.

/// Why one line could not be returned. The framer itself stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line was longer than the limit; it has been (or is being) discarded.
    #[error("line too long")]
    TooLong,
    /// The line was not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
}

/// Cuts a byte stream into LF-terminated lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max: usize,
    /// How much of `buf` is known to hold no LF.
    scanned: usize,
    /// Throwing input away up to the next LF (the tail of an over-long line).
    discarding: bool,
}

impl LineBuffer {
    /// A framer for lines of at most `max` bytes, not counting the LF (a CR before the LF
    /// counts).
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            scanned: 0,
            discarding: false,
        }
    }

    /// The line length limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Adds bytes as read from the peer.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.discarding {
            // Only entered with an empty buffer: see `next_bytes`.
            match data.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    self.discarding = false;
                    data = &data[lf + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete line, without its LF or a CR before it. `None`: read more.
    pub fn next_bytes(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        let Some(rel) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                // No LF yet and already too long: drop what we have, skip the rest as it comes.
                self.buf.clear();
                self.scanned = 0;
                self.discarding = true;
                return Some(Err(LineError::TooLong));
            }
            return None;
        };
        let lf = self.scanned + rel;
        let mut line: Vec<u8> = self.buf.drain(..=lf).collect();
        self.scanned = 0;
        line.pop();
        if line.len() > self.max {
            return Some(Err(LineError::TooLong));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(Ok(line))
    }

    /// The next complete line as UTF-8 text. `None`: read more.
    pub fn next_line(&mut self) -> Option<Result<String, LineError>> {
        Some(
            self.next_bytes()?
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| LineError::InvalidUtf8)),
        )
    }

    /// Bytes held: the start of a line not yet complete, and complete lines not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the framer is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Result<String, LineError>;

    fn ok(s: &str) -> Out {
        Ok(s.to_owned())
    }

    /// Feeds `chunks` one by one, draining after each, and returns every result.
    fn feed(max: usize, chunks: &[&[u8]]) -> Vec<Out> {
        let mut lb = LineBuffer::new(max);
        let mut out = Vec::new();
        let biggest = chunks.iter().map(|c| c.len()).max().unwrap_or(0);
        for chunk in chunks {
            lb.push(chunk);
            assert!(
                lb.buffered() <= max + 1 + biggest,
                "buffer grew to {}",
                lb.buffered()
            );
            while let Some(line) = lb.next_line() {
                out.push(line);
            }
        }
        out
    }

    fn cases() -> Vec<(usize, &'static [u8], Vec<Out>)> {
        use LineError::*;
        vec![
            (16, b"", vec![]),
            (16, b"abc", vec![]),
            (16, b"abc\n", vec![ok("abc")]),
            (16, b"abc\r\n", vec![ok("abc")]),
            (16, b"\n\n", vec![ok(""), ok("")]),
            (16, b"\r\n", vec![ok("")]),
            (16, b"a\rb\n", vec![ok("a\rb")]),
            (16, b"one\ntwo\nthr", vec![ok("one"), ok("two")]),
            (4, b"abcd\n", vec![ok("abcd")]),
            (4, b"abc\r\n", vec![ok("abc")]),
            (4, b"abcde\nxy\n", vec![Err(TooLong), ok("xy")]),
            (
                4,
                b"a\nabcdefghijkl\nb\n",
                vec![ok("a"), Err(TooLong), ok("b")],
            ),
            (4, b"abcdefghij", vec![Err(TooLong)]),
            (
                4,
                b"abcdefghij\nabcdefghij\nok\n",
                vec![Err(TooLong), Err(TooLong), ok("ok")],
            ),
            (16, b"\xff\xfe\nfine\n", vec![Err(InvalidUtf8), ok("fine")]),
            (16, "é\tx\n".as_bytes(), vec![ok("é\tx")]),
            (
                16,
                b"VERSION\t1\t2\nCPID\t42\n",
                vec![ok("VERSION\t1\t2"), ok("CPID\t42")],
            ),
        ]
    }

    #[test]
    fn whole_input() {
        for (max, input, want) in cases() {
            assert_eq!(feed(max, &[input]), want, "input {input:?}");
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for (max, input, want) in cases() {
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                assert_eq!(feed(max, &[a, b]), want, "input {input:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for (max, input, want) in cases() {
            let chunks: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(feed(max, &chunks), want, "input {input:?}");
        }
    }

    #[test]
    fn endless_line_stays_bounded() {
        let mut lb = LineBuffer::new(100);
        let chunk = [b'x'; 64];
        let mut errors = 0;
        for _ in 0..1000 {
            lb.push(&chunk);
            while let Some(r) = lb.next_line() {
                assert_eq!(r, Err(LineError::TooLong));
                errors += 1;
            }
            assert!(lb.buffered() <= 100 + 64);
        }
        assert_eq!(errors, 1, "TooLong is reported once per line");
        assert!(lb.is_discarding());
        lb.push(b"tail\nnext\n");
        assert_eq!(lb.next_line(), Some(ok("next")));
        assert_eq!(lb.next_line(), None);
        assert!(!lb.is_discarding());
    }

    #[test]
    fn bytes_api_keeps_invalid_utf8() {
        let mut lb = LineBuffer::new(8);
        lb.push(b"\xff\r\n");
        assert_eq!(lb.next_bytes(), Some(Ok(vec![0xff])));
        assert_eq!(lb.next_bytes(), None);
        assert_eq!(lb.max(), 8);
    }
}
