//! The commands, one file per family (as mini-redis and Stalwart's `imap/src/op/`): this
//! module dispatches a parsed command by the session's state; the families are
//!
//! - [`mailboxes`] — SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, STATUS, APPEND;
//! - [`list`] — LIST/LSUB (with LIST-EXTENDED and LIST-STATUS) and their fallback parser,
//!   [`list_tree`] which names they return;
//! - [`messages`] — STORE, COPY/MOVE, EXPUNGE;
//! - [`fetch`] — FETCH;
//! - [`search`] — SEARCH (ESEARCH), SORT, THREAD;
//! - [`metadata`] — GETMETADATA, SETMETADATA (RFC 5464);
//! - [`ext`] — the commands imap-codec cannot parse, recovered from the raw bytes by each
//!   extension's own parser.
//!
//! They build on [`super::session`] (state, mailbox view, updates) and never the reverse;
//! LOGIN, AUTHENTICATE, STARTTLS and COMPRESS are session actions carried out by the driver
//! (`imap/mod.rs`), and IDLE is [`super::idle`]; [`auth`] holds their session-side halves.

pub(crate) mod acl;
pub(crate) mod auth;
pub(crate) mod catenate;
pub(crate) mod create_special_use;
pub(crate) mod ext;
pub(crate) mod fetch;
pub(crate) mod list;
pub(crate) mod list_tree;
pub(crate) mod mailboxes;
pub(crate) mod messages;
pub(crate) mod metadata;
pub(crate) mod multiappend;
pub(crate) mod notify_cmd;
pub(crate) mod objectid;
pub(crate) mod preview;
pub(crate) mod search;
pub(crate) mod searchres;
pub(crate) mod token;
pub(crate) mod uidonly;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::utf8::Utf8Kind;
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;

use super::names;
use super::resp::{self, untagged};
use super::session::{Flow, Session, State};
use super::tagged::{Tagged, other};

impl Session {
    /// Handles one command, appending responses to `out`.
    pub fn handle(&mut self, cmd: Command<'static>, out: &mut Vec<u8>) -> Flow {
        // Shared mailboxes: names under `Shared/` and the selected shared mailbox's rights.
        let cmd = match super::shared::route(self, cmd, out) {
            Ok(cmd) => cmd,
            Err(flow) => return flow,
        };
        let tag = cmd.tag.inner().to_owned();
        let name = cmd.body.name();
        if self.enabled.uidonly && uidonly::refusal(&cmd.body) {
            resp::tagged(out, &tag, "BAD", Some("UIDREQUIRED"), uidonly::TEXT);
            return Flow::Continue;
        }
        let result = match cmd.body {
            CommandBody::Capability => {
                untagged(out, &self.capability_text());
                self.done(out, "CAPABILITY completed")
            }
            CommandBody::Noop => self.done(out, "NOOP completed"),
            CommandBody::Check => {
                if self.state.sel().is_none() {
                    Tagged::bad("No mailbox selected")
                } else {
                    self.done(out, "CHECK completed")
                }
            }
            CommandBody::Logout => {
                self.state = State::Logout;
                untagged(out, "BYE Logging out");
                Tagged::ok("LOGOUT completed").write(out, &tag);
                return Flow::Close;
            }
            CommandBody::Id { parameters } => match id_params_ok(parameters.as_deref()) {
                Err(why) => Tagged::bad(why),
                Ok(()) => {
                    untagged(out, "ID (\"name\" \"Postern\" \"vendor\" \"Postern\")");
                    self.done(out, "ID completed")
                }
            },
            CommandBody::Login { .. }
            | CommandBody::Authenticate { .. }
            | CommandBody::StartTLS
            | CommandBody::Compress { .. }
            | CommandBody::Idle => {
                // The driver handles these; here only when the state does not allow them.
                if self.state.user().is_some() && !matches!(name, "COMPRESS" | "IDLE") {
                    Tagged::bad("Already logged in")
                } else {
                    Tagged::bad("Command not allowed now")
                }
            }
            _ if self.state.user().is_none() => Tagged::bad("Log in first"),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } if self.state.sel().is_some() => {
                // Writes its own tagged line, possibly after several rounds (Flow::More).
                return self.fetch(
                    &tag,
                    &sequence_set,
                    macro_or_item_names,
                    uid,
                    &modifiers,
                    out,
                );
            }
            body => self.authenticated(&tag, body, out),
        };
        result.write(out, &tag);
        Flow::Continue
    }

    fn authenticated(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        out: &mut Vec<u8>,
    ) -> Tagged {
        match body {
            CommandBody::Enable { capabilities } => self.enable(capabilities, out),
            CommandBody::Namespace => {
                untagged(out, "NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))");
                self.done(out, "NAMESPACE completed")
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.select(&mailbox, parameters, false, out),
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.select(&mailbox, parameters, true, out),
            CommandBody::Unselect => {
                if self.state.unselect().is_none() {
                    return Tagged::bad("No mailbox selected");
                }
                Tagged::ok("UNSELECT completed")
            }
            CommandBody::Close => {
                let Some(mut sel) = self.state.unselect() else {
                    return Tagged::bad("No mailbox selected");
                };
                if !sel.read_only {
                    let _ = sel.mbox.sync();
                    let del: Vec<u32> = sel
                        .mbox
                        .messages()
                        .iter()
                        .filter(|m| m.flags.deleted)
                        .map(|m| m.uid)
                        .collect();
                    if !del.is_empty() {
                        let _ = sel.mbox.expunge(&del);
                    }
                }
                Tagged::ok("CLOSE completed")
            }
            CommandBody::Create { mailbox } => self.create(&mailbox, out),
            CommandBody::Delete { mailbox } => self.delete(&mailbox, out),
            CommandBody::Rename { from, to } => self.rename(&from, &to, out),
            CommandBody::Subscribe { mailbox } => self.subscribe(&mailbox, true, out),
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&mailbox, false, out),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                let r = names::decode(&reference, self.utf8()).unwrap_or_default();
                let r = if matches!(reference, WireMailbox::Inbox) {
                    "INBOX".into()
                } else {
                    r
                };
                let p = names::list_pattern(&mailbox_wildcard);
                let p = names::decode_bytes(&p, self.utf8()).unwrap_or_default();
                self.list(&r, &[p], &list::ListOpts::default(), false, out)
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let r = names::decode(&reference, self.utf8()).unwrap_or_default();
                let p = names::list_pattern(&mailbox_wildcard);
                let p = names::decode_bytes(&p, self.utf8()).unwrap_or_default();
                self.list(&r, &[p], &list::ListOpts::default(), true, out)
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status_cmd(&mailbox, &item_names, out),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&mailbox, &flags, date, message, out),
            CommandBody::GetQuotaRoot { mailbox } => {
                let Some(name) = names::decode(&mailbox, self.utf8()) else {
                    return Tagged::no_plain("Invalid mailbox name");
                };
                let mut line = b"* QUOTAROOT ".to_vec();
                resp::string(
                    &mut line,
                    names::encode(&name, self.utf8()).as_bytes(),
                    self.utf8(),
                );
                line.extend_from_slice(b" \"\"\r\n");
                out.extend_from_slice(&line);
                self.quota_line(out);
                self.done(out, "GETQUOTAROOT completed")
            }
            CommandBody::GetQuota { root } => {
                if !root.as_ref().is_empty() {
                    return Tagged::no(other("NONEXISTENT"), "No such quota root");
                }
                self.quota_line(out);
                self.done(out, "GETQUOTA completed")
            }
            CommandBody::SetQuota { .. } => {
                Tagged::no(other("NOPERM"), "Quotas are set by the administrator")
            }
            CommandBody::GetMetadata {
                options,
                mailbox,
                entries,
            } => self.get_metadata(&options, &mailbox, &entries, out),
            CommandBody::SetMetadata {
                mailbox,
                entry_values,
            } => self.set_metadata(&mailbox, entry_values, out),
            body => {
                if self.state.sel().is_none() {
                    return Tagged::bad("No mailbox selected");
                }
                self.selected_cmd(tag, body, out)
            }
        }
    }

    fn selected_cmd(&mut self, tag: &str, body: CommandBody<'static>, out: &mut Vec<u8>) -> Tagged {
        match body {
            CommandBody::Expunge => self.expunge(None, out),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set), out),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => self.store(
                &sequence_set,
                &kind,
                &response,
                &flags,
                uid,
                &modifiers,
                out,
            ),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy_move(&sequence_set, &mailbox, uid, false, out),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy_move(&sequence_set, &mailbox, uid, true, out),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(
                tag,
                charset.as_ref(),
                criteria,
                uid,
                &search::SearchReturn::Classic,
                out,
            ),
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => self.sort(&sort_criteria, &charset, search_criteria, uid, out),
            CommandBody::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => self.thread(&algorithm, &charset, search_criteria, uid, out),
            other => Tagged::bad(format!("{} is not supported", other.name())),
        }
    }

    fn enable(&mut self, caps: Vec1<CapabilityEnable<'static>>, out: &mut Vec<u8>) -> Tagged {
        let mut on = Vec::new();
        for c in caps.into_inner() {
            let text = c.to_string();
            match c {
                CapabilityEnable::CondStore if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    on.push("CONDSTORE".to_owned());
                }
                CapabilityEnable::Utf8(Utf8Kind::Accept) if !self.enabled.utf8 => {
                    self.enabled.utf8 = true;
                    on.push("UTF8=ACCEPT".to_owned());
                }
                CapabilityEnable::Other(_) => {
                    let s = text;
                    if s.eq_ignore_ascii_case("QRESYNC") && !self.enabled.qresync {
                        self.enabled.qresync = true;
                        self.enabled.condstore = true;
                        on.push("QRESYNC".to_owned());
                    } else if s.eq_ignore_ascii_case("UIDONLY") && !self.enabled.uidonly {
                        self.enabled.uidonly = true;
                        on.push("UIDONLY".to_owned());
                    } else if s.eq_ignore_ascii_case("IMAP4rev2") && !self.enabled.rev2 {
                        self.enabled.rev2 = true;
                        if let Some(sel) = self.state.sel_mut() {
                            sel.recent.clear();
                        }
                        on.push("IMAP4rev2".to_owned());
                    }
                }
                _ => {}
            }
        }
        untagged(
            out,
            &format!(
                "ENABLED{}{}",
                if on.is_empty() { "" } else { " " },
                on.join(" ")
            ),
        );
        self.done(out, "ENABLE completed")
    }

    fn quota_line(&self, out: &mut Vec<u8>) {
        let Some(user) = self.state.user() else {
            return;
        };
        let Some(limit) = user.quota_bytes else {
            return;
        };
        let used = postern_maildir::Quota::usage(&user.maildir)
            .map(|u| u.bytes)
            .unwrap_or(0);
        untagged(
            out,
            &format!(
                "QUOTA \"\" (STORAGE {} {})",
                used.div_ceil(1024),
                limit / 1024
            ),
        );
    }
}

/// RFC 2971 §3.3: at most 30 field/value pairs, fields up to 30 octets, values up to 1024.
fn id_params_ok(
    params: Option<
        &[(
            imap_codec::imap_types::core::IString<'static>,
            imap_codec::imap_types::core::NString<'static>,
        )],
    >,
) -> Result<(), &'static str> {
    let params = params.unwrap_or_default();
    if params.len() > 30 {
        return Err("ID: more than 30 field/value pairs (RFC 2971)");
    }
    for (field, value) in params {
        if field.as_ref().len() > 30 {
            return Err("ID: field longer than 30 octets (RFC 2971)");
        }
        if value.0.as_ref().is_some_and(|v| v.as_ref().len() > 1024) {
            return Err("ID: value longer than 1024 octets (RFC 2971)");
        }
    }
    Ok(())
}
