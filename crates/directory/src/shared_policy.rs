//! smtpd's policy state shared by a cluster (migration 0004): the hourly sending limit of
//! authenticated users and greylisting, kept in the directory database so that every front
//! counts and greylists alike. authd serves it on its `socketmap` socket (maps `sendlimit`
//! and `greylist`); smtpd never talks SQL.
//!
//! **Sending limit.** Messages per user and minute (`send_counts`), summed over the last 60
//! minutes (a sliding window with minute steps). [`SharedPolicy::count_message`] reserves one
//! message when the window has room, in one transaction that first takes the user's row lock
//! (an upsert of `send_users`: a row lock on PostgreSQL and MariaDB, the write lock on
//! SQLite), so concurrent writers on several authd instances serialise per user and the sum
//! they read includes every committed reservation. A deadlock or serialisation failure the
//! database reports is retried (a few times, then a temporary failure).
//!
//! **Greylisting.** One row per triplet (`greylist_triplets`), the same states and timing as
//! smtpd's file (`first`, `last`, `passed`); each change is a single statement conditional
//! on the state it was computed from (compare-and-swap, retried), an insert of a new triplet
//! loses cleanly to a concurrent one (unique key). Rows carry when they expire; authd
//! sweeps them ([`SharedPolicy::sweep`]), which bounds the table as the file's expiry bounds
//! the file.

use crate::db::Db;
use crate::sql::{self, Backend, SqlArg};
use crate::{DirectoryError, now};

/// The window of the sending limit, in minutes.
const WINDOW_MINUTES: i64 = 60;
/// Longest greylist triplet stored (the column's width).
pub(crate) const MAX_TRIPLET: usize = 600;
/// Longest user name counted (the column's width).
const MAX_SUBJECT: usize = 320;
/// Attempts at a transaction the database aborted (deadlock, serialisation, busy).
const ATTEMPTS: usize = 5;

/// The answer to "one more message from this user?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCount {
    /// Counted: the user has now sent this many in the window, this one included.
    Counted(u32),
    /// The window is full (this many); room again in this many seconds. Nothing was counted.
    Full(u32, u64),
}

/// Greylist timing, seconds (as `[checks] greylist_*_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistTiming {
    /// How long a new triplet is deferred.
    pub delay: u64,
    /// How long a deferred triplet waits for its retry.
    pub window: u64,
    /// How long a triplet that passed stays allowed after it was last seen.
    pub allow: u64,
}

/// The verdict on one triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreylistVerdict {
    /// Let it through.
    Pass,
    /// Deferred; try again in this many seconds.
    Defer(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    first: i64,
    last: i64,
    passed: bool,
}

/// What one check does to a triplet's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// Only `last` moved (a passed triplet seen again).
    Touch(Entry),
    /// A new or restarted entry, or one that just passed.
    Write(Entry),
}

/// The greylist decision: the same states and timing as smtpd's file greylist
/// (`crates/smtpd/src/checks/greylist.rs`, whose unit test walks the same steps).
fn decide(e: Option<Entry>, now: i64, t: GreylistTiming) -> (GreylistVerdict, Change) {
    let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let fresh = Entry {
        first: now,
        last: now,
        passed: false,
    };
    let Some(mut e) = e else {
        return (GreylistVerdict::Defer(t.delay), Change::Write(fresh));
    };
    if e.passed {
        if now.saturating_sub(e.last) > secs(t.allow) {
            return (GreylistVerdict::Defer(t.delay), Change::Write(fresh));
        }
        e.last = now;
        return (GreylistVerdict::Pass, Change::Touch(e));
    }
    let age = now.saturating_sub(e.first);
    if age < secs(t.delay) {
        let left = u64::try_from(secs(t.delay) - age).unwrap_or(t.delay);
        (GreylistVerdict::Defer(left), Change::None)
    } else if age > secs(t.window) {
        (GreylistVerdict::Defer(t.delay), Change::Write(fresh))
    } else {
        e.passed = true;
        e.last = now;
        (GreylistVerdict::Pass, Change::Write(e))
    }
}

fn expires(e: Entry, t: GreylistTiming) -> i64 {
    let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if e.passed {
        e.last.saturating_add(secs(t.allow))
    } else {
        e.first.saturating_add(secs(t.window))
    }
}

/// Errors worth running the transaction again for: a deadlock or serialisation failure
/// (SQLSTATE 40001/40P01, MariaDB's 1213 reports 40001), a lock wait that timed out
/// (MariaDB 1205, HY000), SQLite busy/locked.
fn retryable(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let code = d.code();
    let code = code.as_deref().unwrap_or("");
    matches!(code, "40001" | "40P01" | "5" | "6" | "517" | "261" | "262")
        || d.message().contains("Lock wait timeout")
}

/// The shared policy state in the directory database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedPolicy {
    db: Db,
    backend: Backend,
}

impl SharedPolicy {
    pub(crate) fn new(db: Db, backend: Backend) -> Self {
        Self { db, backend }
    }

    /// Reserves one message for `user` when fewer than `limit` were counted in the last
    /// hour (`limit` 0: no limit, always counted).
    pub async fn count_message(&self, user: &str, limit: u32) -> Result<SendCount, DirectoryError> {
        self.count_message_at(user, limit, now()).await
    }

    /// [`SharedPolicy::count_message`] at `now` (epoch seconds).
    pub async fn count_message_at(
        &self,
        user: &str,
        limit: u32,
        now: i64,
    ) -> Result<SendCount, DirectoryError> {
        let subject = user.trim().to_lowercase();
        if subject.is_empty() || subject.len() > MAX_SUBJECT {
            return Err(DirectoryError::Config(format!(
                "a user name of 1 to {MAX_SUBJECT} bytes is counted"
            )));
        }
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self.count_once(&subject, limit, now).await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || DirectoryError::Conflict("sending count keeps changing".into()),
            DirectoryError::Db,
        ))
    }

    async fn count_once(
        &self,
        subject: &str,
        limit: u32,
        now: i64,
    ) -> Result<SendCount, sqlx::Error> {
        let backend = self.backend;
        let minute = now.div_euclid(60);
        let oldest = minute - WINDOW_MINUTES; // buckets at or before it are out of the window
        let lock = match backend {
            Backend::Mysql => {
                "INSERT INTO send_users (subject, last_seen) VALUES (?, ?) ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)"
            }
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO send_users (subject, last_seen) VALUES (?, ?) ON CONFLICT (subject) DO UPDATE SET last_seen = excluded.last_seen"
            }
        };
        let select = match backend {
            Backend::Sqlite => {
                "SELECT minute, messages FROM send_counts WHERE subject = ? AND minute > ?"
            }
            Backend::Postgres | Backend::Mysql => {
                "SELECT minute, messages FROM send_counts WHERE subject = ? AND minute > ? FOR UPDATE"
            }
        };
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                // The user's lock: every writer takes it first, so the sum below includes
                // every reservation committed before ours.
                sql::bind_own(backend, lock, &[SqlArg::Text(subject), SqlArg::Int(now)])
                    .execute(&mut *tx)
                    .await?;
                let rows = sql::bind_own(
                    backend,
                    select,
                    &[SqlArg::Text(subject), SqlArg::Int(oldest)],
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut sent: i64 = 0;
                let mut first = minute;
                for r in &rows {
                    let m = sql::int(r, 0).ok().flatten().unwrap_or(minute);
                    let n = sql::int(r, 1).ok().flatten().unwrap_or(0);
                    sent = sent.saturating_add(n.max(0));
                    if n > 0 {
                        first = first.min(m);
                    }
                }
                let sent = u32::try_from(sent).unwrap_or(u32::MAX);
                if limit > 0 && sent >= limit {
                    tx.rollback().await?;
                    // Room again when the oldest counted minute leaves the window.
                    let free_at = (first + WINDOW_MINUTES) * 60;
                    let wait = u64::try_from(free_at.saturating_sub(now)).unwrap_or(1);
                    return Ok(SendCount::Full(sent, wait.max(1)));
                }
                let bumped = sql::bind_own(
                    backend,
                    "UPDATE send_counts SET messages = messages + 1 WHERE subject = ? AND minute = ?",
                    &[SqlArg::Text(subject), SqlArg::Int(minute)],
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if bumped == 0 {
                    sql::bind_own(
                        backend,
                        "INSERT INTO send_counts (subject, minute, messages) VALUES (?, ?, 1)",
                        &[SqlArg::Text(subject), SqlArg::Int(minute)],
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                // This user's minutes that left the window (at most 60 rows stay).
                sql::bind_own(
                    backend,
                    "DELETE FROM send_counts WHERE subject = ? AND minute <= ?",
                    &[SqlArg::Text(subject), SqlArg::Int(oldest)],
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(SendCount::Counted(sent.saturating_add(1)))
            })
            .await
    }

    /// Messages counted for `user` in the window ending at `now` (for tests and tools).
    pub async fn sent_at(&self, user: &str, now: i64) -> Result<u32, DirectoryError> {
        let rows = sql::rows_own(
            &self.db,
            self.backend,
            "SELECT messages FROM send_counts WHERE subject = ? AND minute > ?",
            &[
                SqlArg::Text(&user.trim().to_lowercase()),
                SqlArg::Int(now.div_euclid(60) - WINDOW_MINUTES),
            ],
        )
        .await?;
        let mut n: i64 = 0;
        for r in &rows {
            n = n.saturating_add(sql::int(r, 0)?.unwrap_or(0));
        }
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The verdict on a greylist `triplet` (`network|sender|recipient`, as smtpd keys it).
    pub async fn greylist(
        &self,
        triplet: &str,
        timing: GreylistTiming,
    ) -> Result<GreylistVerdict, DirectoryError> {
        self.greylist_at(triplet, timing, now()).await
    }

    /// [`SharedPolicy::greylist`] at `now` (epoch seconds).
    pub async fn greylist_at(
        &self,
        triplet: &str,
        timing: GreylistTiming,
        now: i64,
    ) -> Result<GreylistVerdict, DirectoryError> {
        if triplet.is_empty() || triplet.len() > MAX_TRIPLET {
            return Err(DirectoryError::Config(format!(
                "a greylist triplet of 1 to {MAX_TRIPLET} bytes"
            )));
        }
        for _ in 0..ATTEMPTS {
            let rows = sql::rows_own(
                &self.db,
                self.backend,
                "SELECT first_seen, last_seen, passed FROM greylist_triplets WHERE triplet = ?",
                &[SqlArg::Text(triplet)],
            )
            .await?;
            let old = match rows.first() {
                Some(r) => Some(Entry {
                    first: sql::int(r, 0)?.unwrap_or(0),
                    last: sql::int(r, 1)?.unwrap_or(0),
                    passed: sql::int(r, 2)?.unwrap_or(0) != 0,
                }),
                None => None,
            };
            let (verdict, change) = decide(old, now, timing);
            let done = match (old, change) {
                (_, Change::None) => true,
                (_, Change::Touch(e)) => {
                    // Moving `last` forward only: a racing writer's later `last` stays.
                    sql::exec_own(
                        &self.db,
                        self.backend,
                        "UPDATE greylist_triplets SET last_seen = ?, expires = ? WHERE triplet = ? AND passed = 1 AND last_seen <= ?",
                        &[
                            SqlArg::Int(e.last),
                            SqlArg::Int(expires(e, timing)),
                            SqlArg::Text(triplet),
                            SqlArg::Int(e.last),
                        ],
                    )
                    .await?;
                    true
                }
                (None, Change::Write(e)) => {
                    let r = sql::exec_own(
                        &self.db,
                        self.backend,
                        "INSERT INTO greylist_triplets (triplet, first_seen, last_seen, passed, expires) VALUES (?, ?, ?, ?, ?)",
                        &[
                            SqlArg::Text(triplet),
                            SqlArg::Int(e.first),
                            SqlArg::Int(e.last),
                            SqlArg::Int(i64::from(e.passed)),
                            SqlArg::Int(expires(e, timing)),
                        ],
                    )
                    .await;
                    match r {
                        Ok(_) => true,
                        // Another front inserted it meanwhile: decide again on its row.
                        Err(DirectoryError::Db(sqlx::Error::Database(d)))
                            if d.is_unique_violation() =>
                        {
                            false
                        }
                        Err(e) => return Err(e),
                    }
                }
                (Some(o), Change::Write(e)) => {
                    sql::exec_own(
                        &self.db,
                        self.backend,
                        "UPDATE greylist_triplets SET first_seen = ?, last_seen = ?, passed = ?, expires = ? \
                         WHERE triplet = ? AND first_seen = ? AND last_seen = ? AND passed = ?",
                        &[
                            SqlArg::Int(e.first),
                            SqlArg::Int(e.last),
                            SqlArg::Int(i64::from(e.passed)),
                            SqlArg::Int(expires(e, timing)),
                            SqlArg::Text(triplet),
                            SqlArg::Int(o.first),
                            SqlArg::Int(o.last),
                            SqlArg::Int(i64::from(o.passed)),
                        ],
                    )
                    .await?
                        > 0
                }
            };
            if done {
                return Ok(verdict);
            }
        }
        Err(DirectoryError::Conflict(format!(
            "greylist triplet {triplet} keeps changing"
        )))
    }

    /// Forgets what expired: greylist triplets past their `expires`, minutes out of the
    /// sending window, users with nothing in it. Returns the rows removed.
    pub async fn sweep(&self) -> Result<u64, DirectoryError> {
        self.sweep_at(now()).await
    }

    /// [`SharedPolicy::sweep`] at `now`.
    pub async fn sweep_at(&self, now: i64) -> Result<u64, DirectoryError> {
        let minute = now.div_euclid(60);
        let mut n = sql::exec_own(
            &self.db,
            self.backend,
            "DELETE FROM greylist_triplets WHERE expires < ?",
            &[SqlArg::Int(now)],
        )
        .await?;
        n += sql::exec_own(
            &self.db,
            self.backend,
            "DELETE FROM send_counts WHERE minute <= ?",
            &[SqlArg::Int(minute - WINDOW_MINUTES)],
        )
        .await?;
        n += sql::exec_own(
            &self.db,
            self.backend,
            "DELETE FROM send_users WHERE last_seen < ?",
            &[SqlArg::Int(now - WINDOW_MINUTES * 60 - 60)],
        )
        .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: GreylistTiming = GreylistTiming {
        delay: 60,
        window: 3600,
        allow: 86_400,
    };

    /// The same walk as smtpd's `triplet_defer_pass_and_expiry` on the pure decision.
    #[test]
    fn decisions_match_the_file_greylist() {
        let mut e = None;
        let mut step = |now| {
            let (v, c) = decide(e, now, T);
            match c {
                Change::None => {}
                Change::Touch(n) | Change::Write(n) => e = Some(n),
            }
            v
        };
        assert_eq!(step(1000), GreylistVerdict::Defer(60));
        assert_eq!(step(1030), GreylistVerdict::Defer(30));
        assert_eq!(step(1061), GreylistVerdict::Pass);
        assert_eq!(step(5000), GreylistVerdict::Pass);
        assert_eq!(step(5000 + 86_401), GreylistVerdict::Defer(60));
        assert_eq!(step(5000 + 86_401 + 3601), GreylistVerdict::Defer(60));
    }
}
