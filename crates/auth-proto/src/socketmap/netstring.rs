//! Netstrings: `<decimal length>:<bytes>,`, as Postfix's socketmap protocol frames them.
//!
//! [`NetstringDecoder`] is incremental: [`push`](NetstringDecoder::push) what a read returned,
//! then take netstrings from the iterator until it gives `None` ("read more"). A length longer
//! than the limit is refused as soon as its digits show it, so an announced body is never
//! buffered past the limit. Leading zeros are accepted, as Postfix accepts them.
//!
//! Any error leaves the stream out of step for good: the decoder yields the error once, then
//! only `None`, and ignores further input. The caller answers if it can (a socketmap server
//! has nothing to answer with) and closes the connection.

/// Why the stream is not a valid sequence of netstrings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetstringError {
    /// A netstring must start with a digit.
    #[error("netstring does not start with a length")]
    LeadingGarbage,
    /// Something other than a digit or `:` inside the length.
    #[error("non-digit in netstring length")]
    NonDigitLength,
    /// More than 10 length digits.
    #[error("netstring length has too many digits")]
    TooManyDigits,
    /// The announced length is over the limit.
    #[error("netstring longer than {max} bytes")]
    TooLong {
        /// The decoder's limit.
        max: usize,
    },
    /// The byte after the body is not `,`.
    #[error("netstring not terminated by ','")]
    MissingComma,
}

/// The most length digits accepted (Postfix's lengths fit in 10).
pub const MAX_DIGITS: usize = 10;

/// Encodes `data` as one netstring.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// Incremental netstring decoder with a length limit.
#[derive(Debug)]
pub struct NetstringDecoder {
    buf: Vec<u8>,
    max_len: usize,
    failed: bool,
}

impl NetstringDecoder {
    /// A decoder refusing bodies longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
            failed: false,
        }
    }

    /// Adds bytes as read from the peer (ignored after an error).
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Whether an error was reported; the stream is then unusable.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes held that are not yet a whole netstring.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn decode(&mut self) -> Option<Result<Vec<u8>, NetstringError>> {
        let mut len: usize = 0;
        let mut digits = 0;
        loop {
            let &byte = self.buf.get(digits)?;
            match byte {
                b'0'..=b'9' => {
                    if digits == MAX_DIGITS {
                        return Some(Err(NetstringError::TooManyDigits));
                    }
                    let too_long = NetstringError::TooLong { max: self.max_len };
                    len = match len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(byte - b'0')))
                    {
                        Some(l) if l <= self.max_len => l,
                        _ => return Some(Err(too_long)),
                    };
                    digits += 1;
                }
                b':' if digits > 0 => break,
                _ if digits == 0 => return Some(Err(NetstringError::LeadingGarbage)),
                _ => return Some(Err(NetstringError::NonDigitLength)),
            }
        }
        let start = digits + 1;
        let end = start + len;
        let &terminator = self.buf.get(end)?;
        if terminator != b',' {
            return Some(Err(NetstringError::MissingComma));
        }
        let body = self.buf[start..end].to_vec();
        self.buf.drain(..=end);
        Some(Ok(body))
    }
}

impl Iterator for NetstringDecoder {
    type Item = Result<Vec<u8>, NetstringError>;

    /// The next whole netstring's body; `None` means "read more" (or: failed earlier).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.decode();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
            self.buf = Vec::new();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use NetstringError::*;

    type Out = Result<Vec<u8>, NetstringError>;

    fn ok(s: &[u8]) -> Out {
        Ok(s.to_vec())
    }

    /// Pushes each chunk, draining after each; returns everything yielded.
    fn feed(max: usize, chunks: &[&[u8]]) -> Vec<Out> {
        let mut dec = NetstringDecoder::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            dec.push(chunk);
            out.extend(&mut dec);
        }
        out
    }

    fn cases() -> Vec<(usize, &'static [u8], Vec<Out>)> {
        vec![
            (100, b"", vec![]),
            (100, b"0:,", vec![ok(b"")]),
            (100, b"5:hello,", vec![ok(b"hello")]),
            (100, b"3:a,b,", vec![ok(b"a,b")]),
            (100, b"3:1:,,2:xy,", vec![ok(b"1:,"), ok(b"xy")]),
            (100, b"007:leading,", vec![ok(b"leading")]),
            (100, b"12:domains a.b", vec![]),
            (
                100,
                b"13:mailboxes x@y,9:aliases z,",
                vec![ok(b"mailboxes x@y"), ok(b"aliases z")],
            ),
            (100, b"5:hello;", vec![Err(MissingComma)]),
            (100, b"5:helloX,3:abc,", vec![Err(MissingComma)]),
            (100, b"4:hello,", vec![Err(MissingComma)]),
            (100, b"6:hello,", vec![]),
            (100, b"6:hello,x", vec![Err(MissingComma)]),
            (100, b"5a:hello,", vec![Err(NonDigitLength)]),
            (100, b"5 :hello,", vec![Err(NonDigitLength)]),
            (100, b"-5:hello,", vec![Err(LeadingGarbage)]),
            (100, b":hello,", vec![Err(LeadingGarbage)]),
            (100, b" 5:hello,", vec![Err(LeadingGarbage)]),
            (100, b"\n5:hello,", vec![Err(LeadingGarbage)]),
            (
                100,
                b"3:abc,\n3:def,",
                vec![ok(b"abc"), Err(LeadingGarbage)],
            ),
            (100, b"101:", vec![Err(TooLong { max: 100 })]),
            (100, b"1000", vec![Err(TooLong { max: 100 })]),
            (100, b"100:", vec![]),
            (usize::MAX, b"00000000005:hello,", vec![Err(TooManyDigits)]),
            (usize::MAX, b"0000000005:hello,", vec![ok(b"hello")]),
            (
                usize::MAX,
                b"99999999999999999999999:",
                vec![Err(TooManyDigits)],
            ),
            (100, b"2:ok,5x", vec![ok(b"ok"), Err(NonDigitLength)]),
        ]
    }

    #[test]
    fn whole_input() {
        for (max, input, want) in cases() {
            assert_eq!(
                feed(max, &[input]),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for (max, input, want) in cases() {
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                let got = feed(max, &[a, b]);
                assert_eq!(
                    got,
                    want,
                    "input {:?} cut at {cut}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for (max, input, want) in cases() {
            let chunks: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(
                feed(max, &chunks),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn too_long_is_refused_before_the_body() {
        let mut dec = NetstringDecoder::new(100_000);
        dec.push(b"999999");
        assert_eq!(dec.next(), Some(Err(TooLong { max: 100_000 })));
        assert!(dec.is_failed());
        dec.push(&[b'x'; 4096]);
        assert_eq!(dec.buffered(), 0, "nothing is kept after an error");
        assert_eq!(dec.next(), None);
    }

    #[test]
    fn encode_round_trip() {
        for body in [
            &b""[..],
            b"x",
            b"OK user@example.org",
            b"with,comma:colon",
            &[0u8, 255],
        ] {
            let wire = encode(body);
            assert_eq!(feed(body.len(), &[&wire]), vec![ok(body)]);
        }
        assert_eq!(encode(b"NOTFOUND "), b"9:NOTFOUND ,");
        assert_eq!(encode(&[b'a'; 12])[..3], *b"12:");
    }
}
