//! Queue control commands (`mailctl queue`, `mailq`, `sendmail -q`), answered by the manager
//! from its schedule between delivery starts: no attempt can begin on a message while its
//! spool files are changed. Messages with an attempt in flight are not held, released or
//! deleted (`busy`): the attempt's result would overwrite the change.

use std::collections::HashSet;

use postern_queue::{QueueId, Schedule};
use tracing::{info, warn};

use super::{ControlResult, Manager, QueueAnswer, QueueCmd, now};
use crate::control::{ErrorKind, OfEnvelope, QueueDetail, QueueEntry};

type Refusal = (ErrorKind, String);

fn not_found(id: QueueId) -> Refusal {
    (ErrorKind::NotFound, format!("no message {id} in the queue"))
}

fn busy(id: QueueId) -> Refusal {
    (
        ErrorKind::Busy,
        format!("message {id} is being delivered right now; try again in a moment"),
    )
}

fn failed(id: QueueId, e: impl ToString) -> Refusal {
    (ErrorKind::TempFail, format!("{id}: {}", e.to_string()))
}

/// One message's answer to a command that changed it.
fn done_one(text: String, id: QueueId) -> QueueAnswer {
    QueueAnswer::Done {
        text,
        id: Some(id),
        count: 1,
    }
}

impl Manager {
    /// Runs a queue control command.
    pub(super) async fn control(
        &self,
        schedule: &mut Schedule,
        inflight: &HashSet<QueueId>,
        cmd: QueueCmd,
    ) -> ControlResult {
        match cmd {
            QueueCmd::List(filter) => Ok(QueueAnswer::List(
                schedule
                    .list(&filter)
                    .into_iter()
                    .map(|e| QueueEntry::of(e, inflight.contains(&e.id)))
                    .collect(),
            )),
            QueueCmd::Show(id) => {
                let env = schedule.get(id).ok_or_else(|| not_found(id))?;
                Ok(QueueAnswer::Show(Box::new(QueueDetail::of(
                    env,
                    inflight.contains(&id),
                ))))
            }
            QueueCmd::Flush(one) => flush(schedule, one),
            QueueCmd::Hold(id) => self.hold_or_release(schedule, inflight, id, true).await,
            QueueCmd::Release(id) => self.hold_or_release(schedule, inflight, id, false).await,
            QueueCmd::Delete(id) => self.delete_one(schedule, inflight, id).await,
            QueueCmd::DeleteFrom(sender) => self.delete_from(schedule, inflight, &sender).await,
        }
    }

    /// Holds (`hold`) or releases a message: its spool file moves, then its schedule entry
    /// follows; a released message is due now.
    async fn hold_or_release(
        &self,
        schedule: &mut Schedule,
        inflight: &HashSet<QueueId>,
        id: QueueId,
        hold: bool,
    ) -> ControlResult {
        let Some(env) = schedule.get(id) else {
            return Err(not_found(id));
        };
        if inflight.contains(&id) {
            return Err(busy(id));
        }
        let mut env = env.clone();
        let spool = self.spool.clone();
        let r = tokio::task::spawn_blocking(move || {
            if hold {
                spool.hold(id)
            } else {
                spool.release(id)
            }
        })
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_not_found() => {
                schedule.remove(id);
                return Err(not_found(id));
            }
            Ok(Err(e)) => return Err(failed(id, e)),
            Err(e) => return Err(failed(id, e)),
        }
        env.held = hold;
        if !hold {
            // Released: try it now.
            env.next_attempt = env.next_attempt.min(now());
        }
        schedule.update(env);
        let what = if hold { "held" } else { "released" };
        info!(%id, "{what} by the administrator");
        Ok(done_one(format!("message {id} {what}"), id))
    }

    async fn delete_one(
        &self,
        schedule: &mut Schedule,
        inflight: &HashSet<QueueId>,
        id: QueueId,
    ) -> ControlResult {
        if schedule.get(id).is_none() {
            return Err(not_found(id));
        }
        if inflight.contains(&id) {
            return Err(busy(id));
        }
        self.delete(schedule, vec![id]).await?;
        info!(%id, "deleted by the administrator");
        Ok(done_one(format!("message {id} deleted"), id))
    }

    /// Deletes every message from `sender` that is not being delivered right now.
    async fn delete_from(
        &self,
        schedule: &mut Schedule,
        inflight: &HashSet<QueueId>,
        sender: &str,
    ) -> ControlResult {
        let s = sender_to_match(sender, &self.config.hostname);
        let (mut ids, mut skipped) = (Vec::new(), 0);
        for e in schedule.iter() {
            if e.sender_str().eq_ignore_ascii_case(&s) {
                if inflight.contains(&e.id) {
                    skipped += 1;
                } else {
                    ids.push(e.id);
                }
            }
        }
        let n = ids.len();
        if n > 0 {
            self.delete(schedule, ids).await?;
        }
        let shown = if s.is_empty() { "<>" } else { s.as_str() };
        info!(sender = shown, messages = n, "deleted by the administrator");
        let mut text = format!("{n} message(s) from {shown} deleted");
        if skipped > 0 {
            text.push_str(&format!(
                "; {skipped} being delivered right now were left (try again in a moment)"
            ));
        }
        Ok(QueueAnswer::Done {
            text,
            id: None,
            count: n,
        })
    }

    /// Removes messages from the schedule and the spool (no bounce); on a spool error they
    /// go back into the schedule (what was removed already is found missing at its attempt).
    async fn delete(&self, schedule: &mut Schedule, ids: Vec<QueueId>) -> Result<(), Refusal> {
        let removed: Vec<_> = ids.iter().filter_map(|&id| schedule.remove(id)).collect();
        for &id in &ids {
            self.fresh.forget(id);
        }
        let spool = self.spool.clone();
        let r = tokio::task::spawn_blocking(move || spool.remove_all(&ids)).await;
        let why = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        warn!(error = %why, "deleting from the queue failed");
        for env in removed {
            schedule.insert(env);
        }
        Err((ErrorKind::TempFail, format!("deleting failed: {why}")))
    }
}

/// Makes one message (`Some`, not held) or every message not held due now.
fn flush(schedule: &mut Schedule, one: Option<QueueId>) -> ControlResult {
    let t = now();
    let ids: Vec<QueueId> = match one {
        Some(id) => {
            let env = schedule.get(id).ok_or_else(|| not_found(id))?;
            if env.held {
                return Err((
                    ErrorKind::Usage,
                    format!("message {id} is held; release it first"),
                ));
            }
            vec![id]
        }
        None => schedule
            .iter()
            .filter(|e| !e.held && e.next_attempt > t)
            .map(|e| e.id)
            .collect(),
    };
    let mut n = 0;
    for id in ids {
        if let Some(env) = schedule.get(id)
            && env.next_attempt > t
        {
            let mut env = env.clone();
            env.next_attempt = t;
            schedule.update(env);
            n += 1;
        }
    }
    info!(messages = n, "queue flushed");
    Ok(QueueAnswer::Done {
        text: match one {
            Some(id) => format!("message {id} scheduled for delivery now"),
            None => format!("{n} message(s) scheduled for delivery now"),
        },
        id: one,
        count: n,
    })
}

/// The sender a `delete_from` matches: `<>` or `""` is the null sender, angle brackets go,
/// and a bare name means name@hostname, as for local submission.
fn sender_to_match(sender: &str, hostname: &str) -> String {
    let s = sender.trim();
    let s = if s == "<>" { "" } else { s };
    let s = s
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(s);
    if !s.is_empty() && !s.contains('@') {
        format!("{s}@{hostname}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::sender_to_match;

    #[test]
    fn delete_from_sender_forms() {
        let h = "mail.example.org";
        assert_eq!(sender_to_match("<>", h), "");
        assert_eq!(sender_to_match("", h), "");
        assert_eq!(sender_to_match(" <a@b.example> ", h), "a@b.example");
        assert_eq!(sender_to_match("root", h), "root@mail.example.org");
        assert_eq!(sender_to_match("<root>", h), "root@mail.example.org");
    }
}
