//! One LMTP connection: bytes in, the session state machine decides, this driver runs the
//! recipient checks and deliveries it asks for and writes the replies.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use postern_smtp_session::{Action, Completion, PeerInfo, Reply, Session, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::rcpt::Recipients;
use crate::tls::Stream;
use crate::{Accepted, Ctx};

/// Serves one connection to its end.
pub(crate) async fn serve(accepted: Accepted, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match accepted {
        Accepted::Unix(s) => {
            // Registered for reading only: each reply smtpd reads would otherwise wake
            // this process for nothing (see postern_auth_proto::client::QuietUnixStream).
            let s = match postern_auth_proto::client::QuietUnixStream::from_tokio(s) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "LMTP connection unusable");
                    return;
                }
            };
            let peer = PeerInfo {
                ip: None,
                tls: false,
                authenticated: None,
            };
            let config = ctx.session.clone();
            drive(
                Stream::Unix(s),
                config,
                peer,
                "local".to_owned(),
                ctx,
                shutdown,
            )
            .instrument(info_span!("lmtp", session = id, client = %"local"))
            .await;
        }
        Accepted::Tcp(s, addr) => {
            let peer = PeerInfo {
                ip: Some(addr.ip()),
                tls: false,
                authenticated: None,
            };
            let config = ctx.tcp_session.clone();
            drive(
                Stream::Tcp(s),
                config,
                peer,
                addr.to_string(),
                ctx,
                shutdown,
            )
            .instrument(info_span!("lmtp", session = id, client = %addr))
            .await;
        }
    }
}

async fn drive(
    mut stream: Stream,
    config: Arc<postern_smtp_session::SessionConfig>,
    peer: PeerInfo,
    peer_name: String,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let mut session = Session::new(config, peer);
    let mut recipients = Recipients::new(ctx.clone());
    let idle = ctx.config.lmtp.idle_timeout_secs.duration();
    let deadline = Instant::now() + ctx.config.lmtp.session_timeout_secs.duration();
    if stream
        .write_all(&session.greeting().to_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut work: VecDeque<Action> = VecDeque::new();
    // Held from a read that brought input until the next wait for input (crate::busy); set
    // before each wait.
    let mut busy: Option<crate::busy::Busy>;
    loop {
        // Run everything the session asked for, in order.
        let mut out = Vec::new();
        while let Some(action) = work.pop_front() {
            match action {
                Action::Reply(r) => r.write_to(&mut out),
                Action::Close => {
                    drop(stream.write_all(&out).await);
                    drop(stream.flush().await);
                    return;
                }
                Action::CheckSender { params, .. } => {
                    recipients.new_transaction(params.size);
                    push(
                        &mut work,
                        session.completed(Completion::Sender(Verdict::Accept)),
                    );
                }
                Action::CheckRecipient { address, .. } => {
                    let verdict = recipients.check(&address).await;
                    push(&mut work, session.completed(Completion::Recipient(verdict)));
                }
                Action::Deliver(tx) => {
                    // Replies so far (to a `MAIL`, `RCPT`s and `BDAT … LAST` that came in one
                    // piece) wait for the delivery's: the client reads them all at once, so
                    // one write wakes it once, not twice. After `DATA` there are none: the
                    // 354 went out before the body came.
                    // Recipients living on other nodes go there (crate::proxy).
                    let replies =
                        crate::proxy::deliver(&ctx, &mut recipients, *tx, &peer_name).await;
                    push(&mut work, session.completed(Completion::Delivered(replies)));
                }
                Action::StartTls if stream.can_start_tls() && ctx.tls.is_some() => {
                    // The 220 is in `out`: send it, then the handshake. Whatever the client
                    // pipelined after the command stays in the session, which drops it.
                    let Some(tls) = ctx.tls.as_ref() else { return };
                    if stream.write_all(&std::mem::take(&mut out)).await.is_err()
                        || !stream.start_tls(&tls.acceptor()).await
                        || session.tls_started().is_err()
                    {
                        return;
                    }
                }
                Action::StartTls
                | Action::Auth { .. }
                | Action::AuthResponse(_)
                | Action::AuthCancel => {
                    // Not advertised over LMTP; the session never asks, but answer sanely.
                    out.extend_from_slice(&Reply::new(502, (5, 5, 1), "Not supported").to_bytes());
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if session.is_closed() {
            return;
        }
        busy = None;
        let now = Instant::now();
        let wait = idle.min(deadline.saturating_duration_since(now));
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                push(&mut work, session.shutdown());
                continue;
            }
            r = tokio::time::timeout(wait, stream.read(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                busy.get_or_insert_with(crate::busy::Busy::enter);
                push(&mut work, session.input(&buf[..n]));
            }
            Ok(Err(e)) => {
                debug!(error = %e, "read failed");
                return;
            }
            Err(_) => {
                warn!("session timed out");
                push(&mut work, session.timeout());
            }
        }
    }
}

fn push(work: &mut VecDeque<Action>, actions: impl IntoActions) {
    work.extend(actions.into_actions());
}

/// `Session::completed` returns a `Result`; a misuse there is a bug of ours: log it and
/// close the connection rather than guess.
trait IntoActions {
    fn into_actions(self) -> Vec<Action>;
}

impl IntoActions for Vec<Action> {
    fn into_actions(self) -> Vec<Action> {
        self
    }
}

impl<E: std::fmt::Display> IntoActions for Result<Vec<Action>, E> {
    fn into_actions(self) -> Vec<Action> {
        self.unwrap_or_else(|e| {
            warn!(error = %e, "session state error");
            vec![
                Action::Reply(Reply::new(421, (4, 3, 0), "Internal error, closing")),
                Action::Close,
            ]
        })
    }
}
