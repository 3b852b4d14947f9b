//! The once-per-sender memory of Sieve `vacation` (RFC 5230 `:days`): one small file per
//! (sender, handle) under the user's home, holding the time of the last response.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where a user's vacation memory lives, below their home.
const DIR_NAME: &str = ".postern-vacation";

/// A user's vacation memory.
pub(crate) struct VacationLog {
    dir: PathBuf,
}

impl VacationLog {
    pub(crate) fn new(home: &Path) -> Self {
        Self {
            dir: home.join(DIR_NAME),
        }
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(hash_hex(key))
    }

    /// True when a response for `key` went out less than `days` days ago.
    pub(crate) fn recently(&self, key: &str, days: u32) -> bool {
        let window = Duration::from_secs(u64::from(days.max(1)) * 86_400);
        std::fs::metadata(self.file(key))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < window)
    }

    /// Notes that a response for `key` went out now.
    pub(crate) fn record(&self, key: &str) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Rewriting the file updates its modification time, which is what `recently` reads.
        std::fs::write(self.file(key), format!("{now}\n"))
    }
}

/// 128 bits of FNV-1a (two differently seeded 64-bit halves), as hex: a file name that
/// holds no address.
fn hash_hex(key: &str) -> String {
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_key() {
        let home = tempfile::tempdir().unwrap();
        let log = VacationLog::new(home.path());
        assert!(!log.recently("a@x.org|h", 7));
        log.record("a@x.org|h").unwrap();
        assert!(log.recently("a@x.org|h", 7));
        assert!(!log.recently("b@x.org|h", 7));
        assert_ne!(hash_hex("a"), hash_hex("b"));
        assert_eq!(hash_hex("a").len(), 32);
    }
}
