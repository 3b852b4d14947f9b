//! The command-size limits, checked on the raw bytes before imap-next buffers them (see the
//! limits in `imap/mod.rs`): a scanner that follows lines and literal announcements without
//! keeping the bytes.

/// Counts the bytes of the command being received, without buffering them: before login
/// everything, literals included ([`PreauthScanner::feed`]); after login the bytes outside
/// literals ([`PreauthScanner::feed_text`]).
#[derive(Debug, Default)]
pub(crate) struct PreauthScanner {
    cmd_bytes: u64,
    /// Bytes of the current command outside its literals.
    text_bytes: u64,
    literal_left: u64,
    tail: Vec<u8>,
}

impl PreauthScanner {
    /// Feeds bytes; false once the current command exceeds `limit`.
    pub(crate) fn feed(&mut self, data: &[u8], limit: u64) -> bool {
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
            self.cmd_bytes += 1;
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
