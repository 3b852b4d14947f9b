//! What the driver hands imap-next, and how much at once.
//!
//! imap-next 0.3.4 cannot give back input it was handed, yet STARTTLS and COMPRESS must drop
//! whatever the client sent behind them (CVE-2011-0411: commands pipelined in the clear after
//! STARTTLS must never run under TLS). So imap-next gets input only when it asks for more
//! (`NeedMoreInput`), in pieces such that a STARTTLS or COMPRESS command can only end where a
//! piece ends: when imap-next reports one, it holds nothing that came after it, and the rest
//! is still here to drop ([`Input::clear`]).
//!
//! Both commands are one line without literals, whose text holds the command name. A raw
//! line (bytes up to an LF) that holds neither `STARTTLS` nor `COMPRESS` (in any case) cannot
//! be one of them, so runs of such lines — literal data included — go over in one piece;
//! a line that holds a name goes over alone, and so does the rest of a line begun in an
//! earlier read (its start may have held the name).

/// Read bytes not yet handed to imap-next.
#[derive(Debug)]
pub(crate) struct Input {
    buf: Vec<u8>,
    pos: usize,
    /// The last piece handed over ended with an LF (or nothing was handed over yet).
    at_line_start: bool,
    /// Where in `buf` the next line holding a command name starts (`None`: not searched yet
    /// past `pos`; `Some(buf.len())`: no such line).
    next_name_line: Option<usize>,
}

/// The command names that change the transport.
const NAMES: [&[u8; 8]; 2] = [b"STARTTLS", b"COMPRESS"];

impl Default for Input {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            at_line_start: true,
            next_name_line: None,
        }
    }
}

impl Input {
    /// Takes freshly read bytes (whatever was left is replaced: the driver reads only once
    /// everything was handed over, or dropped).
    pub(crate) fn set(&mut self, bytes: Vec<u8>) {
        self.buf = bytes;
        self.pos = 0;
        self.next_name_line = None;
    }

    /// Drops what is left; the next byte starts a line (and a command).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The next piece, at most one line (before login: when imap-next reports a LOGIN or the
    /// end of an AUTHENTICATE it holds nothing that came after it, so a proxied login can
    /// pass the rest on to the backend, see [`Input::take_rest`]).
    pub(crate) fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return self.next_piece();
        }
        let n = line_len(rest);
        let start = self.pos;
        self.pos += n;
        self.at_line_start = self.buf[self.pos - 1] == b'\n';
        Some(&self.buf[start..self.pos])
    }

    /// What was read and not handed over yet; nothing is left.
    pub(crate) fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.get(self.pos..).unwrap_or_default().to_vec();
        self.clear();
        rest
    }

    /// The next piece to hand imap-next, `None` when nothing is left.
    pub(crate) fn next_piece(&mut self) -> Option<&[u8]> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            if self.buf.capacity() > 0 {
                // An idle connection keeps no read buffer.
                self.buf = Vec::new();
                self.pos = 0;
                self.next_name_line = None;
            }
            return None;
        }
        let n = if !self.at_line_start {
            // The rest of a line begun earlier.
            line_len(rest)
        } else {
            let named = match self.next_name_line {
                Some(i) if i >= self.pos => i,
                _ => {
                    let i = name_line(&self.buf, self.pos);
                    self.next_name_line = Some(i);
                    i
                }
            };
            if named == self.pos {
                line_len(rest)
            } else {
                // Whole lines without a name, up to the one with a name (or everything).
                named - self.pos
            }
        };
        let start = self.pos;
        self.pos += n;
        self.at_line_start = self.buf[self.pos - 1] == b'\n';
        Some(&self.buf[start..self.pos])
    }
}

/// The length of the first line of `input`, its LF included (all of it when there is no LF).
fn line_len(input: &[u8]) -> usize {
    input
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |i| i + 1)
}

/// The start of the first line at or after `from` (a line start) holding a command name
/// that changes the transport; `buf.len()` if there is none.
fn name_line(buf: &[u8], from: usize) -> usize {
    let mut line_start = from;
    let mut i = from;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' {
            line_start = i + 1;
        } else if matches!(b | 0x20, b's' | b'c')
            && let Some(w) = buf.get(i..i + 8)
            && NAMES.iter().any(|n| w.eq_ignore_ascii_case(&n[..]))
        {
            return line_start;
        }
        i += 1;
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::command::CommandBody;
    use imap_next::server::{Event, Options, Server};
    use imap_next::{Interrupt, Io, State};

    use super::*;

    fn server() -> Server {
        let mut o = Options::default();
        o.crlf_relaxed = true;
        let greeting = imap_codec::imap_types::response::Greeting::ok(None, "hi").unwrap();
        Server::new(o, greeting)
    }

    /// Runs `reads` through [`Input`] into imap-next; at the first STARTTLS or COMPRESS
    /// returns the tags decoded so far and what is left (imap-next must hold nothing more).
    fn run(reads: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut server = server();
        let mut input = Input::default();
        let mut reads = reads.iter();
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            match server.next() {
                Ok(Event::CommandReceived { command }) => {
                    tags.push(command.tag.inner().to_owned());
                    if matches!(
                        command.body,
                        CommandBody::StartTLS | CommandBody::Compress { .. }
                    ) {
                        loop {
                            match server.next() {
                                Err(Interrupt::Io(Io::Output(_))) => {}
                                Err(Interrupt::Io(Io::NeedMoreInput)) => break,
                                other => panic!("imap-next held more input: {other:?}"),
                            }
                        }
                        let mut left = input.buf[input.pos..].to_vec();
                        for r in reads {
                            left.extend_from_slice(r);
                        }
                        return (tags, left);
                    }
                }
                Ok(_) | Err(Interrupt::Io(Io::Output(_))) => {}
                Err(Interrupt::Io(Io::NeedMoreInput)) => match input.next_piece() {
                    Some(p) => server.enqueue_input(p),
                    None => match reads.next() {
                        Some(r) => input.set(r.to_vec()),
                        None => return (tags, Vec::new()),
                    },
                },
                Err(e) => panic!("{e:?}"),
            }
        }
        panic!("no end");
    }

    /// Whatever way the bytes arrive, what follows STARTTLS / COMPRESS is never in
    /// imap-next: every split of the stream into two reads, then byte by byte.
    #[test]
    fn nothing_behind_starttls_or_compress_reaches_imap_next() {
        for (stream, name, expect) in [
            (
                &b"a NOOP\r\nb LOGIN {9}\r\nx\nSTARTTL {8+}\r\nSTARTTLS\r\nc NOOP\r\n\
                   d starttls\r\ne LOGIN u p\r\nf NOOP\r\n"[..],
                "d",
                &b"e LOGIN u p\r\nf NOOP\r\n"[..],
            ),
            (
                b"a LOGIN {3+}\r\nu\nc p\r\nb APPEND x {12+}\r\nCOMPRESS\r\nxx\r\n\
                  c Compress DEFLATE\r\ne LOGIN u p\r\n",
                "c",
                b"e LOGIN u p\r\n",
            ),
        ] {
            for split in 0..=stream.len() {
                let (tags, left) = run(&[&stream[..split], &stream[split..]]);
                assert_eq!(tags.last().map(String::as_str), Some(name), "split {split}");
                assert_eq!(left, expect, "split {split}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            let (_, left) = run(&bytes);
            assert_eq!(left, expect);
        }
    }

    /// Before login, line by line ([`Input::next_line`]): when imap-next reports the LOGIN,
    /// it holds nothing that came after it, and [`Input::take_rest`] has the pipelined rest
    /// (what a proxied login passes on to the backend), whatever way the bytes arrive.
    #[test]
    fn nothing_behind_login_reaches_imap_next_line_by_line() {
        let stream =
            &b"a NOOP\r\nb LOGIN {3+}\r\nbob {4+}\r\np\nw\n\r\nc SELECT INBOX\r\nd NOOP\r\n"[..];
        let expect = &b"c SELECT INBOX\r\nd NOOP\r\n"[..];
        let run = |reads: &[&[u8]]| {
            let mut server = server();
            let mut input = Input::default();
            let mut reads = reads.iter();
            for _ in 0..10_000 {
                match server.next() {
                    Ok(Event::CommandReceived { command })
                        if matches!(command.body, CommandBody::Login { .. }) =>
                    {
                        loop {
                            match server.next() {
                                Err(Interrupt::Io(Io::Output(_))) => {}
                                Err(Interrupt::Io(Io::NeedMoreInput)) => break,
                                other => panic!("imap-next held more input: {other:?}"),
                            }
                        }
                        let mut left = input.take_rest();
                        for r in reads {
                            left.extend_from_slice(r);
                        }
                        return left;
                    }
                    Ok(_) | Err(Interrupt::Io(Io::Output(_))) => {}
                    Err(Interrupt::Io(Io::NeedMoreInput)) => match input.next_line() {
                        Some(p) => server.enqueue_input(p),
                        None => match reads.next() {
                            Some(r) => input.set(r.to_vec()),
                            None => panic!("no LOGIN"),
                        },
                    },
                    Err(e) => panic!("{e:?}"),
                }
            }
            panic!("no end");
        };
        for split in 0..=stream.len() {
            assert_eq!(
                run(&[&stream[..split], &stream[split..]]),
                expect,
                "split {split}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), expect);
    }

    /// Literal data without a command name goes over in one piece, not line by line.
    #[test]
    fn plain_lines_and_literals_go_in_one_piece() {
        let mut data = b"a APPEND INBOX {100000+}\r\n".to_vec();
        data.extend(b"0123456789abcdefghijklmnopqrstuvwxyz0123456789\r\n".repeat(2000));
        let mut input = Input::default();
        input.set(data.clone());
        assert_eq!(input.next_piece().map(<[u8]>::len), Some(data.len()));
        assert_eq!(input.next_piece(), None);
        // A name in the middle: the lines before it, the line, the rest.
        input.set(b"x NOOP\r\ny NOOP\r\nz starttls\r\nw NOOP\r\nv NOOP\r\n".to_vec());
        let pieces: Vec<Vec<u8>> =
            std::iter::from_fn(|| input.next_piece().map(<[u8]>::to_vec)).collect();
        assert_eq!(
            pieces,
            [
                b"x NOOP\r\ny NOOP\r\n".to_vec(),
                b"z starttls\r\n".to_vec(),
                b"w NOOP\r\nv NOOP\r\n".to_vec()
            ]
        );
        // The end of a line begun in an earlier read goes alone.
        input.set(b"a STARTT".to_vec());
        assert_eq!(input.next_piece(), Some(&b"a STARTT"[..]));
        input.set(b"LS\r\nb NOOP\r\n".to_vec());
        assert_eq!(input.next_piece(), Some(&b"LS\r\n"[..]));
        assert_eq!(input.next_piece(), Some(&b"b NOOP\r\n"[..]));
    }
}
