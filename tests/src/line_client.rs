//! [`LineClient`]: a raw CRLF line client over TCP (IMAP, POP3), for tests that check replies
//! line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw line client (IMAP or POP3) over one TCP connection.
pub struct LineClient {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl LineClient {
    /// Wraps a connected stream (its read time-out left as it is).
    pub fn new(s: TcpStream) -> Self {
        Self {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Connects to `addr` within 10 s; reads time out after 30 s.
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self::new(s)
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.w.local_addr().unwrap()
    }

    /// One line with its CRLF removed; empty at EOF.
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.r.read_until(b'\n', &mut buf).expect("read a line");
        String::from_utf8_lossy(&buf).trim_end().to_owned()
    }

    /// Sends `s` as it is.
    pub fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    /// SMTP: sends `command` with CRLF (nothing when empty: the greeting), then reads one
    /// reply, continuation lines included; returns its last line. Panics at EOF.
    pub fn smtp(&mut self, command: &str) -> String {
        if !command.is_empty() {
            self.send(&format!("{command}\r\n"));
        }
        loop {
            let l = self.line();
            assert!(
                !l.is_empty(),
                "connection closed waiting for a reply to {command:?}"
            );
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    }

    /// Lines up to and including the one tagged `tag` (literals read as lines); panics at
    /// EOF before any line and after 10,000 lines.
    pub fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            assert!(
                !l.is_empty() || !out.is_empty(),
                "EOF before {tag}: {out:?}"
            );
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
            assert!(out.len() < 10_000);
        }
    }

    /// Sends `TAG CMD` and returns the lines up to the tagged one.
    pub fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}\r\n"));
        self.until_tagged(tag)
    }

    /// [`cmd`](Self::cmd), and panics unless the tagged line is `TAG OK`.
    pub fn ok(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        let out = self.cmd(tag, cmd);
        assert!(
            out.last().unwrap().starts_with(&format!("{tag} OK")),
            "{cmd}: {out:?}"
        );
        out
    }

    /// Everything up to EOF.
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        self.r.read_to_string(&mut s).expect("read to EOF");
        s
    }
}
