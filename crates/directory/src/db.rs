//! The connection pool behind a circuit breaker.
//!
//! While the database is down, every query would otherwise wait the pool's whole acquire
//! timeout before failing, so SMTP sessions and logins pile up behind an outage. Once a
//! query finds the database unreachable, queries fail at once (a temporary failure, never
//! an answer) for the `down_retry` back-off; after it, one query at a time (the probe)
//! tries the database while the others keep failing fast. The first query that reaches
//! the database ends the outage: no restart is needed.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::AnyPool;

/// A pool plus its breaker. Cheap to clone (clones share the breaker).
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: AnyPool,
    breaker: Arc<Breaker>,
}

#[derive(Debug)]
struct Breaker {
    state: Mutex<State>,
    retry: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// `Some`: the database was found unreachable; queries fail at once until then.
    down_until: Option<Instant>,
    /// A probe is in flight (only while down).
    probing: bool,
}

/// What a query may do, decided before it runs.
enum Pass {
    /// The database is up: run.
    Run,
    /// The database is down and this query is the one probe.
    Probe,
}

impl Db {
    pub(crate) fn new(pool: AnyPool, retry: Duration) -> Self {
        Self {
            pool,
            breaker: Arc::new(Breaker {
                state: Mutex::new(State::default()),
                retry,
            }),
        }
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs `query` on the pool unless the database is known to be down, in which case it
    /// fails at once with an I/O error (a temporary failure for clients).
    pub(crate) async fn run<'a, T, F, Fut>(&'a self, query: F) -> Result<T, sqlx::Error>
    where
        F: FnOnce(&'a AnyPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let pass = self.breaker.admit()?;
        // A probe dropped midway (its client went away) must not leave the breaker
        // believing a probe is still in flight.
        let mut guard = ProbeGuard {
            breaker: matches!(pass, Pass::Probe).then_some(&*self.breaker),
        };
        let result = query(&self.pool).await;
        guard.breaker = None;
        match &result {
            Err(e) if unreachable(e) && !self.saturated(e) => self.breaker.failed(e),
            Ok(_) | Err(_) => self.breaker.reached(),
        }
        result
    }

    /// A pool timeout with every connection open and busy is load, not an outage: the
    /// database answered them all. (While it is down, its connections break and close, so
    /// a timeout then leaves room in the pool: connecting is what failed.)
    fn saturated(&self, e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::PoolTimedOut)
            && self.pool.size() >= self.pool.options().get_max_connections()
    }

    /// Whether queries are currently failing fast.
    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        lock(&self.breaker.state).down_until.is_some()
    }

    /// Ends the current back-off now (tests: no waiting on the clock).
    #[cfg(test)]
    pub(crate) fn end_backoff(&self) {
        let mut s = lock(&self.breaker.state);
        if s.down_until.is_some() {
            s.down_until = Some(Instant::now());
        }
    }
}

struct ProbeGuard<'a> {
    breaker: Option<&'a Breaker>,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker {
            lock(&b.state).probing = false;
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Breaker {
    fn admit(&self) -> Result<Pass, sqlx::Error> {
        let mut s = lock(&self.state);
        let Some(until) = s.down_until else {
            return Ok(Pass::Run);
        };
        let now = Instant::now();
        if now < until || s.probing {
            let wait = until.saturating_duration_since(now);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!(
                    "the database is unreachable; next attempt in {} ms",
                    wait.as_millis()
                ),
            )));
        }
        s.probing = true;
        Ok(Pass::Probe)
    }

    fn failed(&self, e: &sqlx::Error) {
        let mut s = lock(&self.state);
        if s.down_until.is_none() {
            tracing::warn!(error = %e, retry_ms = self.retry.as_millis(), "database unreachable: lookups fail at once (temporary failure) until it answers again");
        }
        s.down_until = Some(Instant::now() + self.retry);
        s.probing = false;
    }

    fn reached(&self) {
        let mut s = lock(&self.state);
        if s.down_until.take().is_some() {
            tracing::warn!("database reachable again");
        }
        s.probing = false;
    }
}

/// Errors that mean the database cannot be reached (as opposed to a query it refused).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // The wire itself broke (a half-closed connection answering PostgreSQL's SSLRequest
        // with garbage, as a dying server or a cut relay does): not a query the database
        // refused, which comes back as `Database`.
        sqlx::Error::Protocol(_) => true,
        // SQLSTATE class 08 (connection exception) and 57P01-57P03 (PostgreSQL shutting
        // down, or starting up and not yet accepting connections).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A listener that counts the connections it accepts and never answers them.
    async fn mute_server() -> (u16, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                n2.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        (port, n)
    }

    fn lazy_pool(url: &str) -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_millis(300))
            .connect_lazy(url)
            .unwrap()
    }

    async fn select_one(db: &Db) -> Result<i32, sqlx::Error> {
        db.run(|p| async move {
            use sqlx::Row;
            sqlx::query("SELECT 1")
                .fetch_one(p)
                .await?
                .try_get::<i32, _>(0)
        })
        .await
    }

    #[tokio::test]
    async fn while_down_queries_fail_without_connecting_and_one_probe_at_a_time() {
        let (port, accepts) = mute_server().await;
        let db = Db::new(
            lazy_pool(&format!("postgres://u:p@127.0.0.1:{port}/d")),
            Duration::from_secs(3600),
        );
        // The first query finds out: it fails (the server never answers).
        assert!(select_one(&db).await.is_err());
        assert!(db.is_down());
        let tried = accepts.load(Ordering::SeqCst);
        assert!(tried >= 1, "the first query tried to connect");
        // During the back-off: failures, and no connection attempt at all.
        for _ in 0..50 {
            let e = select_one(&db).await.unwrap_err();
            assert!(matches!(e, sqlx::Error::Io(_)), "{e:?}");
        }
        assert_eq!(accepts.load(Ordering::SeqCst), tried);

        // After the back-off one probe goes out; meanwhile the others still fail at once.
        db.end_backoff();
        let probe = {
            let db = db.clone();
            tokio::spawn(async move { select_one(&db).await })
        };
        while accepts.load(Ordering::SeqCst) == tried {
            tokio::task::yield_now().await;
        }
        let during = accepts.load(Ordering::SeqCst);
        for _ in 0..50 {
            assert!(select_one(&db).await.is_err());
        }
        assert_eq!(accepts.load(Ordering::SeqCst), during);
        assert!(probe.await.unwrap().is_err());
        assert!(db.is_down());
    }

    /// A server that answers every connection with one 0 byte and closes it: PostgreSQL's
    /// client gets garbage for its SSLRequest (a protocol error, not an I/O error).
    async fn garbage_server() -> (u16, Arc<AtomicUsize>) {
        use tokio::io::AsyncWriteExt;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n2.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(&[0]).await;
            }
        });
        (port, n)
    }

    #[tokio::test]
    async fn a_broken_wire_trips_the_breaker_too() {
        let (port, accepts) = garbage_server().await;
        let db = Db::new(
            lazy_pool(&format!("postgres://u:p@127.0.0.1:{port}/d?sslmode=prefer")),
            Duration::from_secs(3600),
        );
        let e = select_one(&db).await.unwrap_err();
        assert!(db.is_down(), "{e:?}");
        let tried = accepts.load(Ordering::SeqCst);
        for _ in 0..20 {
            assert!(select_one(&db).await.is_err());
        }
        assert_eq!(accepts.load(Ordering::SeqCst), tried);
    }

    #[tokio::test]
    async fn a_query_the_database_refuses_does_not_trip_the_breaker() {
        let db = Db::new(lazy_pool("sqlite::memory:"), Duration::from_secs(3600));
        let Err(e) = db
            .run(|p| async move { sqlx::query("SELECT * FROM nosuchtable").fetch_all(p).await })
            .await
        else {
            panic!("a missing table is an error");
        };
        assert!(matches!(e, sqlx::Error::Database(_)), "{e:?}");
        assert!(!db.is_down());
        assert_eq!(select_one(&db).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_pool_busy_under_load_does_not_trip_the_breaker() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(100))
            .connect_lazy("sqlite::memory:")
            .unwrap();
        let db = Db::new(pool, Duration::from_secs(3600));
        let held = db.pool().acquire().await.unwrap();
        let e = select_one(&db).await.unwrap_err();
        assert!(matches!(e, sqlx::Error::PoolTimedOut), "{e:?}");
        assert!(!db.is_down(), "load is not an outage");
        drop(held);
        assert_eq!(select_one(&db).await.unwrap(), 1);
    }

    /// The database goes away and comes back: temporary failures, then answers from the
    /// same handle (no restart). A local TCP relay in front of PostgreSQL plays the outage.
    #[tokio::test]
    #[ignore = "needs postgresql (scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
    async fn recovers_when_the_database_is_back() {
        use std::sync::atomic::AtomicBool;
        let pg = std::env::var("POSTERN_TEST_PG_URL").expect("POSTERN_TEST_PG_URL");
        let hostport = pg
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let up2 = up.clone();
        let target = hostport.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let hp = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(hp).await {
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                    }
                });
            }
        });
        let url = pg.replacen(&hostport, &format!("127.0.0.1:{port}"), 1);
        let db = Db::new(lazy_pool(&url), Duration::from_secs(3600));
        assert_eq!(select_one(&db).await.unwrap(), 1);
        // Outage: the pooled connections go away too.
        up.store(false, Ordering::SeqCst);
        db.pool().close().await;
        let db = Db {
            pool: lazy_pool(&url),
            breaker: db.breaker.clone(),
        };
        assert!(select_one(&db).await.is_err());
        assert!(db.is_down());
        assert!(select_one(&db).await.is_err());
        // Back: the first query after the back-off reaches it and ends the outage.
        up.store(true, Ordering::SeqCst);
        assert!(select_one(&db).await.is_err(), "still backing off");
        db.end_backoff();
        assert_eq!(select_one(&db).await.unwrap(), 1);
        assert!(!db.is_down());
        assert_eq!(select_one(&db).await.unwrap(), 1);
    }
}
