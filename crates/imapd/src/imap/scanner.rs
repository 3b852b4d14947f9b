//! The command-size limits, checked on the raw bytes before imap-next buffers them (see the
//! limits in `imap/mod.rs`): a scanner that follows lines and literal announcements without
//! keeping the bytes.

/// Counts the bytes of the command being received, without buffering them: before login
/// everything, literals included ([`PreauthScanner::feed`]); after login the bytes outside
/// literals ([`PreauthScanner::feed_text`]).
#[derive(Debug, Default)]
pub(crate) struct PreauthScanner {
    /// The first bytes of the current command (up to [`HEAD`]), to recognise an ID command.
    head: Vec<u8>,
    /// The current command is `tag ID …` (decided once `head` holds the command name).
    id_cmd: bool,
    cmd_bytes: u64,
    /// Bytes of the current command outside its literals.
    text_bytes: u64,
    literal_left: u64,
    tail: Vec<u8>,
}

/// Bytes of a command's start kept to recognise `tag ID `.
const HEAD: usize = 72;

/// The most a valid ID command (RFC 2971 §3.3: at most 30 field/value pairs, fields up to
/// 30 octets, values up to 1024) takes on the wire after its tag: every octet of fields and
/// values escaped in quoted strings (two octets each, quotes around), separators, `ID (`, `)`
/// and CRLF. Literals (`{1024}` CRLF and the octets) are shorter.
pub(crate) const ID_MAX_WIRE: u64 = 4 + 30 * ((2 + 2 * 30) + 1 + (2 + 2 * 1024)) + 29 + 1 + 2;

impl PreauthScanner {
    /// Feeds bytes; false once the current command exceeds `limit`, or for an ID command
    /// `limit` plus [`ID_MAX_WIRE`], so a maximal valid ID (RFC 2971) always fits while a
    /// stranger still cannot make us hold more than that before login.
    pub(crate) fn feed(&mut self, data: &[u8], limit: u64) -> bool {
        let mut i = 0;
        while i < data.len() {
            let limit = if self.id_cmd {
                limit.saturating_add(ID_MAX_WIRE)
            } else {
                limit
            };
            if self.literal_left > 0 {
                let take = self.literal_left.min((data.len() - i) as u64);
                self.literal_left -= take;
                i += usize::try_from(take).unwrap_or(data.len());
                continue;
            }
            let b = data[i];
            i += 1;
            self.cmd_bytes += 1;
            if self.head.len() < HEAD && self.head.last() != Some(&b'\n') {
                self.head.push(b);
                if !self.id_cmd {
                    self.id_cmd = is_id(&self.head);
                }
            }
            if b == b'\n' {
                let line = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
                if let Some(n) = literal_announcement(line) {
                    if self.cmd_bytes.saturating_add(n) > limit {
                        return false;
                    }
                    self.cmd_bytes += n;
                    self.literal_left = n;
                } else {
                    self.cmd_bytes = 0;
                    self.head.clear();
                    self.id_cmd = false;
                }
                self.tail.clear();
            } else {
                if self.tail.len() >= 32 {
                    self.tail.remove(0);
                }
                self.tail.push(b);
            }
            if self.cmd_bytes > limit {
                return false;
            }
        }
        true
    }

    /// After login: feeds bytes and checks that no command carries more than `text_limit`
    /// bytes outside its literals (literals up to `literal_limit` are skipped; imap-next
    /// refuses bigger ones, so their announcement ends the command here). On overflow,
    /// `Err(n)`: the first `n` bytes of `data` hold only whole commands that came before
    /// the offending one (and may still be served).
    pub(crate) fn feed_text(
        &mut self,
        data: &[u8],
        text_limit: u64,
        literal_limit: u64,
    ) -> Result<(), usize> {
        let mut cmd_start = 0;
        let mut i = 0;
        while i < data.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min((data.len() - i) as u64);
                self.literal_left -= take;
                i += usize::try_from(take).unwrap_or(data.len());
                continue;
            }
            let b = data[i];
            i += 1;
            self.text_bytes += 1;
            if b == b'\n' {
                let line = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
                match literal_announcement(line) {
                    Some(n) if n <= literal_limit => self.literal_left = n,
                    _ => {
                        self.text_bytes = 0;
                        cmd_start = i;
                    }
                }
                self.tail.clear();
            } else {
                if self.tail.len() >= 32 {
                    self.tail.remove(0);
                }
                self.tail.push(b);
            }
            if self.text_bytes > text_limit {
                return Err(cmd_start);
            }
        }
        Ok(())
    }
}

/// Whether a command's first bytes are `tag ID ` (any case).
fn is_id(head: &[u8]) -> bool {
    let Some(sp) = head.iter().position(|&b| b == b' ') else {
        return false;
    };
    head.get(sp + 1..sp + 4)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"ID "))
}

/// `…{123}` / `…{123+}` / `…~{123}` at the end of a line → 123.
pub(crate) fn literal_announcement(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
        .unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // More than 19 digits is absurd; treat it as huge.
    if digits.len() > 19 {
        return Some(u64::MAX / 2);
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
