//! The message file format: a header line, the JSON envelope, then the raw message.
//!
//! ```text
//! POSTERN-QUEUE 1 <json-length>\n<json envelope>\n<message bytes>
//! ```
//!
//! Every read is bounded: the header line by [`MAX_LINE`], the JSON by [`MAX_ENVELOPE_JSON`],
//! and the message by the file's length, which must equal header + JSON + 1 + `size`.

use std::io::{self, BufRead, Read};
use std::path::Path;

use crate::envelope::Envelope;
use crate::error::{IoContext, QueueError, Result};

/// The first word of every message file.
pub const MAGIC: &str = "POSTERN-QUEUE";

/// The largest JSON envelope written or read (1 MiB): a corrupt length cannot make us
/// allocate more than this.
pub const MAX_ENVELOPE_JSON: usize = 1 << 20;

/// Format version written in the header line.
const VERSION: &str = "1";

/// Longest header line accepted, newline included.
const MAX_LINE: u64 = 48;

/// The bytes before the message: header line, JSON envelope, newline.
pub(crate) fn encode_prefix(env: &Envelope) -> Result<Vec<u8>> {
    // Serializing a derived struct of strings, numbers and enums into memory cannot fail.
    let json = serde_json::to_vec(env).expect("envelope serializes");
    if json.len() > MAX_ENVELOPE_JSON {
        return Err(QueueError::EnvelopeTooLarge {
            size: json.len(),
            max: MAX_ENVELOPE_JSON,
        });
    }
    let mut out = format!("{MAGIC} {VERSION} {}\n", json.len()).into_bytes();
    out.reserve(json.len() + 1);
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(out)
}

/// Reads and checks the prefix of the message file at `path`, whose length is `file_len`,
/// leaving `r` at the first message byte; returns the envelope stored at commit.
pub(crate) fn read_prefix(r: &mut impl BufRead, file_len: u64, path: &Path) -> Result<Envelope> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .ctx("read", path)?;
    if line.pop() != Some(b'\n') {
        return Err(QueueError::corrupt(path, "no header line"));
    }
    let json_len =
        parse_header(&line).ok_or_else(|| QueueError::corrupt(path, "bad header line"))?;
    let body_offset = line.len() as u64 + 1 + json_len as u64 + 1;
    if body_offset > file_len {
        return Err(QueueError::corrupt(path, "truncated envelope"));
    }
    let mut json = vec![0; json_len + 1];
    r.read_exact(&mut json)
        .map_err(|e| eof_is_corrupt(e, path))?;
    if json.pop() != Some(b'\n') {
        return Err(QueueError::corrupt(path, "no newline after envelope"));
    }
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|e| QueueError::corrupt(path, format!("bad envelope: {e}")))?;
    if body_offset.checked_add(envelope.size) != Some(file_len) {
        return Err(QueueError::corrupt(
            path,
            format!(
                "length {file_len} does not match envelope size {} (truncated?)",
                envelope.size
            ),
        ));
    }
    Ok(envelope)
}

/// Parses `POSTERN-QUEUE 1 <len>` (without newline) into the JSON length.
fn parse_header(line: &[u8]) -> Option<usize> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    if words.next()? != MAGIC || words.next()? != VERSION {
        return None;
    }
    let len = words.next()?;
    if words.next().is_some() || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    len.parse().ok().filter(|n| *n <= MAX_ENVELOPE_JSON)
}

/// Reading past the end of a file whose length we checked means it changed or lied: corrupt.
pub(crate) fn eof_is_corrupt(e: io::Error, path: &Path) -> QueueError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        QueueError::corrupt(path, "unexpected end of file")
    } else {
        QueueError::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Recipient;

    fn file(body: &[u8]) -> (Envelope, Vec<u8>) {
        let mut env = Envelope::new(Some("a@b".into()), vec![Recipient::new("c@d")]);
        env.size = body.len() as u64;
        let mut f = encode_prefix(&env).unwrap();
        f.extend_from_slice(body);
        (env, f)
    }

    fn parse(bytes: &[u8]) -> Result<Envelope> {
        read_prefix(&mut &bytes[..], bytes.len() as u64, Path::new("x"))
    }

    #[test]
    fn round_trip() {
        let (env, f) = file(b"Subject: hi\r\n\r\nbody\r\n");
        let mut r = &f[..];
        assert_eq!(
            read_prefix(&mut r, f.len() as u64, Path::new("x")).unwrap(),
            env
        );
        assert_eq!(r, b"Subject: hi\r\n\r\nbody\r\n");
        assert!(f.starts_with(b"POSTERN-QUEUE 1 "));
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let (_, f) = file(b"body\r\n");
        for n in 0..f.len() {
            let err = parse(&f[..n]).unwrap_err();
            assert!(matches!(err, QueueError::Corrupt { .. }), "{n}: {err}");
        }
        let mut longer = f.clone();
        longer.push(b'x');
        assert!(matches!(parse(&longer), Err(QueueError::Corrupt { .. })));
    }

    #[test]
    fn bad_headers() {
        for h in [
            "POSTERN-QUEUE 2 10",
            "POSTERN-QUEUE 1 ",
            "POSTERN-QUEUE 1 +5",
            "POSTERN-QUEUE 1 99999999999999999999",
            "POSTERN-QUEUE 1 1048577",
            "POSTERN-QUEUE 1 5 6",
            "SOMETHING 1 5",
        ] {
            assert_eq!(parse_header(h.as_bytes()), None, "{h}");
        }
        assert_eq!(
            parse_header(b"POSTERN-QUEUE 1 1048576"),
            Some(MAX_ENVELOPE_JSON)
        );
        let huge = format!("POSTERN-QUEUE 1 {}\n", MAX_ENVELOPE_JSON + 1);
        assert!(matches!(
            parse(huge.as_bytes()),
            Err(QueueError::Corrupt { .. })
        ));
    }
}
