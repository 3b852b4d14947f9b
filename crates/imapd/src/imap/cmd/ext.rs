//! Commands imap-codec 2.0.0-alpha.10 cannot parse, recovered from the raw bytes.
//!
//! imap-next frames every message itself: a line that announces a literal gets its
//! continuation request (or counts as a non-synchronising literal), the literal is read, and
//! only when a line ends without an announcement is the whole message handed to imap-codec.
//! When imap-codec refuses it, the driver receives the complete message — every line and
//! every literal, within `max_command_size` — as `MalformedMessage { discarded_bytes }`. So an
//! extension whose syntax imap-codec lacks (MULTIAPPEND's second literal, `FETCH $`, `SETACL`,
//! …) is parsed here, by the extension's own parser, from those bytes; nothing is framed
//! twice and a literal can never be mistaken for a command.
//!
//! Each extension module offers one `fn(&[u8]) -> Option<Job>` and is listed in [`PARSERS`].
//! A parser must look at the command name first and return `None` quickly for anything else
//! (the bytes may be a 25 MiB malformed APPEND), and must cost linear time in the input.
//! Only logged-in sessions reach these parsers.

use super::super::session::{Flow, Session};
use super::{create_special_use, list, multiappend, objectid, searchres};

/// Runs a recovered command on the session (on the blocking pool in the driver), writing its
/// responses, tagged one included, to `out`.
pub(crate) type Job = Box<dyn FnOnce(&mut Session, &mut Vec<u8>) -> Flow + Send>;

/// One extension's parser: the job for a command it recognises.
type Parser = fn(&[u8]) -> Option<Job>;

/// The extension parsers, tried in order; the first that recognises the command wins.
const PARSERS: &[Parser] = &[
    searchres::job,
    list::job,
    super::notify_cmd::job,
    multiappend::job,
    create_special_use::job,
    objectid::job,
    super::acl::job,
];

/// Longest tag an extension command may carry (a longer one is answered `* BAD`).
const MAX_TAG: usize = 1024;

/// The job for a command imap-codec refused, if an extension recognises it.
///
/// The command must start with a valid tag (RFC 9051 §9: `1*<any ASTRING-CHAR except "+">`)
/// and a space: the parsers echo the tag in their tagged response, and bytes before the
/// first space may hold a literal (`a{5}\r\nxxxxx SEARCH …`, whose CRLF would split the
/// response), or be `+` or `*` (read by the client as a continuation request or an untagged
/// response). Anything else gets the driver's `* BAD` and runs nothing.
pub(crate) fn reparse(raw: &[u8]) -> Option<Job> {
    let sp = raw.iter().take(MAX_TAG + 1).position(|&b| b == b' ')?;
    let tag = std::str::from_utf8(&raw[..sp]).ok()?;
    imap_codec::imap_types::core::Tag::validate(tag).ok()?;
    PARSERS
        .iter()
        .find_map(|p| p(raw))
        .map(super::super::shared::guard_job)
}

#[cfg(test)]
mod tests {
    /// The premise of this module: a command with several literals that imap-codec refuses
    /// reaches the fallback whole — one continuation request per literal, then one answer —
    /// and no literal's content is ever run as a command.
    #[test]
    fn a_refused_command_arrives_whole_with_its_literals() {
        let dir = tempfile::tempdir().unwrap();
        let md =
            postern_maildir::Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
        let out = crate::imap::fuzzing::run_imap(
            b"a APPEND INBOX {11}\r\nb NOOP\r\n\r\n {11}\r\nc NOOP\r\n\r\n\r\nd NOOP\r\n",
            Some(&md),
            1 << 16,
        );
        let out = String::from_utf8_lossy(&out);
        assert_eq!(out.matches("\r\n+ ").count(), 2, "{out}");
        assert!(out.contains("a BAD"), "{out}");
        assert!(!out.contains("b OK") && !out.contains("c OK"), "{out}");
        assert!(out.contains("d OK"), "{out}");
    }
}

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;
