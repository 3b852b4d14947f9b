//! Shared mailboxes: the `Shared/` namespace and the rights of RFC 4314 at every command that
//! names a mailbox.
//!
//! `Shared/<owner>/<folder>` is `<folder>` of `<owner>`'s Maildir, as Dovecot's shared
//! namespace (`prefix = Shared/%%u/`) names it. The owner's Maildir comes from authd's userdb
//! (`USER <owner> service=imap`: `home`, `mail`, `quota_rule`), never from a path built from
//! the name; an owner whose userdb entry carries `host=` lives on another node of a cluster
//! and is refused with `NO [UNAVAILABLE]` (this node cannot open that home). The rights come
//! from the folder's `dovecot-acl` (`postern_maildir::acl`): deny by default, and a mailbox
//! the user may not look up (`l`) is answered exactly as one that does not exist.
//!
//! How commands reach it: [`route`] is called by `Session::handle` before dispatch. A command
//! that names a shared mailbox is checked against the rights RFC 4314 §4 lists for it, then
//! run by the ordinary code with the session's user pointing at the owner's Maildir (and
//! quota) and the name rewritten to the owner's folder name; the few names echoed in
//! responses are put back. Commands on a selected shared mailbox (STORE, EXPUNGE, CLOSE, MOVE,
//! FETCH that would set `\Seen`) are checked the same way. Commands recovered by `cmd/ext.rs`
//! run through [`guard_job`]: with a shared mailbox selected on which the user lacks any of
//! `s w t e`, they see it read-only, so a new extension cannot write past the ACL; and a name
//! under `Shared/` that does not go through [`route`] resolves in the user's own Maildir,
//! where it cannot exist (CREATE of such names is refused here) — deny by default.
//!
//! Discovery (LIST): owners who granted `l` to the user (or to `anyone`/`authenticated`) are
//! found in the sharing index (`postern_maildir::acl::SharedIndex`, Dovecot's
//! `shared-mailboxes` dictionary, kept at `<mail_root>/.shared-mailboxes`), then only those
//! owners' folders are read. SETACL/DELETEACL/DELETE here and `mailctl share` rewrite the
//! owner's entries from the owner's ACL files after each change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use postern_maildir::Maildir;
use postern_maildir::acl::{self, Rights, SharedIndex};

use super::cmd::ext::Job;
use super::cmd::list::ListOpts;
use super::names::{self, Pattern};
use super::resp;
use super::session::{Flow, Session, State, status_items};
use super::tagged::{Tagged, other};

/// The namespace prefix.
pub(crate) const PREFIX: &str = "Shared/";
/// The namespace's root name (never selectable).
const ROOT: &str = "Shared";
/// The file (in the user's Maildir root) that keeps subscriptions to shared mailboxes: the
/// names contain the owner's address, whose dots a Maildir++ `subscriptions` name cannot hold.
const SUBS_FILE: &str = "postern-shared-subscriptions";
/// Most owners read for one LIST, and folders per owner (a LIST costs at most this many
/// ACL file reads).
const MAX_OWNERS: usize = 200;
const MAX_FOLDERS: usize = 2000;
/// Most bytes of ACL files one LIST reads for one owner, and in all. An ACL file may be
/// 256 KiB and 1000 entries (~3 ms to parse, release build): without these a user sharing
/// 2000 such folders with `anyone` made every user's LIST read 500 MiB and parse for
/// seconds. Ordinary ACLs (a few entries, ~100 bytes) fit thousands of folders.
const OWNER_ACL_BYTES: u64 = 1 << 20;
const LIST_ACL_BYTES: u64 = 16 << 20;
/// Most subscriptions to shared mailboxes.
const MAX_SUBS: usize = 10_000;
/// Owner lookups kept per session, and for how long.
const CACHE_MAX: usize = 64;
const CACHE_TTL: Duration = Duration::from_secs(60);
/// authd's userdb answer time limit.
const USERDB_TIMEOUT: Duration = Duration::from_secs(10);

/// Another user whose mailboxes are shared with this one.
pub(crate) struct Owner {
    /// The owner's account name (as the userdb gives it).
    pub(crate) name: String,
    /// The owner's Maildir.
    pub(crate) maildir: Maildir,
    /// The owner's quota (APPEND/COPY into their mailboxes count against it).
    pub(crate) quota_bytes: Option<u64>,
}

/// The answer of an owner lookup.
pub(crate) enum Lookup {
    Found(Arc<Owner>),
    /// No such account, or no Maildir yet (nothing is shared then).
    NotFound,
    /// The account lives on another node (`host=`).
    Remote,
    /// authd could not answer.
    Unavailable,
}

/// Looks an owner up by name.
pub(crate) type Resolver = Arc<dyn Fn(&str) -> Lookup + Send + Sync>;

/// The session's shared-namespace state.
#[derive(Default)]
pub(crate) struct SharedState {
    resolver: Option<Resolver>,
    index: Option<SharedIndex>,
    /// Owner lookups (`None`: no such owner, so probing names costs authd one lookup each
    /// per TTL).
    cache: HashMap<String, (Instant, Option<Arc<Owner>>)>,
    /// The selected shared mailbox: its full name, owner and folder, and the rights last
    /// read from its ACL.
    selected: Option<(String, Arc<Owner>, String, Rights)>,
    /// A command is running on an owner's Maildir (no second routing).
    running: bool,
}

impl SharedState {
    /// The state for a daemon: owners from authd's userdb socket, the index under the mail
    /// root.
    pub(crate) fn for_config(config: &postern_config::Config) -> Self {
        let socket = config.socket_path(&config.authd.userdb_socket);
        Self::new(
            Arc::new(move |name: &str| userdb_lookup(&socket, name)),
            Some(SharedIndex::at(index_path(config), 0o600)),
        )
    }

    /// A state with a given resolver and index (tests).
    pub(crate) fn new(resolver: Resolver, index: Option<SharedIndex>) -> Self {
        Self {
            resolver: Some(resolver),
            index,
            ..Self::default()
        }
    }
}

/// Where the sharing index lives (imapd and mailctl agree on it).
pub(crate) fn index_path(config: &postern_config::Config) -> PathBuf {
    config.mail_root().join(acl::INDEX_FILE)
}

/// What a name refers to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A name of the user's own namespace.
    Personal,
    /// `Shared` itself, or `Shared/<owner>`: never selectable.
    Root,
    OwnerRoot(String),
    /// `Shared/<owner>/<folder>`.
    Mailbox {
        owner: String,
        folder: String,
    },
    /// Under `Shared/` but not a valid name (`Shared/../x`, `Shared/bob/../../x`, …).
    Invalid,
}

/// Classifies a decoded mailbox name.
pub(crate) fn classify(name: &str) -> Target {
    if name == ROOT {
        return Target::Root;
    }
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Target::Personal;
    };
    if rest.is_empty() {
        return Target::Root;
    }
    let (owner, folder) = match rest.split_once('/') {
        Some((o, f)) => (o, f),
        None => (rest, ""),
    };
    if acl::check_name(owner).is_err() {
        return Target::Invalid;
    }
    if folder.is_empty() {
        return Target::OwnerRoot(owner.to_owned());
    }
    let folder = names::normalise_inbox(folder.to_owned());
    if postern_maildir::folder::dir_name(&folder).is_err() {
        return Target::Invalid;
    }
    Target::Mailbox {
        owner: owner.to_owned(),
        folder,
    }
}

/// A shared mailbox the user reached, with their rights on it.
pub(crate) struct Access {
    pub(crate) owner: Arc<Owner>,
    pub(crate) folder: String,
    pub(crate) rights: Rights,
    /// `Shared/<owner>/<folder>` as the client named it.
    pub(crate) full: String,
}

/// The refusal for a missing right: a user who may not look the mailbox up learns nothing
/// (the answer of a mailbox that does not exist); others learn which right is missing.
pub(crate) fn deny(rights: Rights, need: &str) -> Tagged {
    if rights.has('l') {
        Tagged::no(
            other("NOPERM"),
            format!("Permission denied: this needs the {need:?} right (RFC 4314)"),
        )
    } else {
        nonexistent()
    }
}

fn nonexistent() -> Tagged {
    Tagged::no(other("NONEXISTENT"), "No such mailbox")
}

fn r(s: &str) -> Rights {
    Rights::parse_imap(s).unwrap_or_default()
}

impl Session {
    fn user_name(&self) -> Option<String> {
        self.state.user().map(|u| u.name.clone())
    }

    /// The owner `name`, from the cache or the resolver. The user themself is their own
    /// Maildir.
    pub(crate) fn shared_owner(&mut self, name: &str) -> Result<Arc<Owner>, Tagged> {
        let Some(user) = self.state.user() else {
            return Err(Tagged::bad("Log in first"));
        };
        if user.name.eq_ignore_ascii_case(name) {
            return Ok(Arc::new(Owner {
                name: user.name.clone(),
                maildir: user.maildir.clone(),
                quota_bytes: user.quota_bytes,
            }));
        }
        let key = name.to_ascii_lowercase();
        if let Some((at, o)) = self.shared.cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return o.clone().ok_or_else(nonexistent);
        }
        let Some(resolver) = self.shared.resolver.clone() else {
            return Err(nonexistent());
        };
        let found = match resolver(name) {
            Lookup::Found(o) => Some(o),
            Lookup::NotFound => None,
            Lookup::Remote => {
                return Err(Tagged::no(
                    other("UNAVAILABLE"),
                    "That user's mailboxes are on another server of the cluster; shared \
                     mailboxes work only between users of the same server",
                ));
            }
            Lookup::Unavailable => {
                return Err(Tagged::no(
                    other("UNAVAILABLE"),
                    "The user directory is unavailable, try again",
                ));
            }
        };
        if self.shared.cache.len() >= CACHE_MAX {
            self.shared.cache.clear();
        }
        self.shared
            .cache
            .insert(key, (Instant::now(), found.clone()));
        found.ok_or_else(nonexistent)
    }

    /// Resolves `Shared/<owner>/<folder>`: `None` for a personal name; `Err` for names that
    /// cannot be a mailbox (answered as nonexistent) and owners that cannot be reached.
    pub(crate) fn shared_access(&mut self, name: &str) -> Option<Result<Access, Tagged>> {
        match classify(name) {
            Target::Personal => None,
            Target::Root | Target::OwnerRoot(_) | Target::Invalid => Some(Err(nonexistent())),
            Target::Mailbox { owner, folder } => Some(self.access_to(&owner, folder, name)),
        }
    }

    fn access_to(&mut self, owner: &str, folder: String, full: &str) -> Result<Access, Tagged> {
        let o = self.shared_owner(owner)?;
        let user = self.user_name().unwrap_or_default();
        let rights = o.maildir.rights(&folder, &o.name, &user);
        Ok(Access {
            owner: o,
            folder,
            rights,
            full: full.to_owned(),
        })
    }

    /// Runs `f` with the session's user on the owner's Maildir and quota.
    fn as_owner<R>(&mut self, owner: &Owner, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = match &mut self.state {
            State::Authenticated(u) | State::Selected(u, _) => (
                std::mem::replace(&mut u.maildir, owner.maildir.clone()),
                std::mem::replace(&mut u.quota_bytes, owner.quota_bytes),
            ),
            State::NotAuthenticated | State::Logout => return f(self),
        };
        // The selected mailbox is not a folder of the owner's namespace: its name is hidden
        // for the command, so that code which appends through the selected mailbox when the
        // names match (APPEND, MULTIAPPEND) cannot take the user's own `Team` for the
        // owner's `Team`.
        let hidden = self.state.sel_mut().map(|s| {
            let tmp = format!("\0{}", s.name);
            let orig = std::mem::replace(&mut s.name, tmp);
            (orig, s.name.clone())
        });
        self.shared.running = true;
        let res = f(self);
        self.shared.running = false;
        if let Some((orig, tmp)) = hidden
            && let Some(s) = self.state.sel_mut()
            && s.name == tmp
        {
            s.name = orig;
        }
        if let State::Authenticated(u) | State::Selected(u, _) = &mut self.state {
            u.maildir = saved.0;
            u.quota_bytes = saved.1;
        }
        res
    }

    /// The rights on the selected mailbox when it is a shared one, read again from its ACL
    /// at every command (a revocation takes effect at once). A user who lost `r` is taken
    /// out of the mailbox.
    fn selected_shared(&mut self) -> Option<Rights> {
        // The common case costs one check: no shared mailbox was selected.
        self.shared.selected.as_ref()?;
        let sel_name = self.state.sel().map(|s| s.name.clone());
        let (full, owner, folder) = match (&self.shared.selected, sel_name) {
            (Some((full, o, f, _)), Some(n)) if *full == n => (full.clone(), o.clone(), f.clone()),
            _ => {
                self.shared.selected = None;
                return None;
            }
        };
        let user = self.user_name().unwrap_or_default();
        let rights = owner.maildir.rights(&folder, &owner.name, &user);
        if !rights.has('r') {
            tracing::info!(mailbox = %full, %user, "read right revoked: mailbox closed");
            self.state.unselect();
            self.shared.selected = None;
            return None;
        }
        if let Some(x) = self.shared.selected.as_mut() {
            x.3 = rights;
        }
        Some(rights)
    }

    /// Rewrites the sharing index entries of `owner` from their ACL files.
    pub(crate) fn reindex(&self, owner: &Owner) -> Result<(), String> {
        let Some(index) = &self.shared.index else {
            return Ok(());
        };
        let grantees =
            acl::lookup_grantees(&owner.maildir, MAX_FOLDERS).map_err(|e| e.to_string())?;
        index
            .set_owner(&owner.name, &grantees)
            .map_err(|e| e.to_string())
    }
}

/// A wire mailbox for `name` (encoded for this client).
fn wire(name: &str, utf8: bool) -> Option<WireMailbox<'static>> {
    AString::try_from(names::encode(name, utf8))
        .ok()
        .map(WireMailbox::from)
}

/// Reads the rights on a selected shared mailbox again (closing it when `r` is gone), for
/// updates sent outside a command (IDLE).
pub(crate) fn recheck_selected(s: &mut Session) {
    if s.shared.selected.is_some() {
        let _ = s.selected_shared();
    }
}

/// Whether a decoded name is `Shared` or under it.
pub(crate) fn is_shared_name(name: &str) -> bool {
    name == ROOT || name.starts_with(PREFIX)
}

/// The decoded name if it is under `Shared` (or is it).
fn shared_name(s: &Session, mb: &WireMailbox<'_>) -> Option<String> {
    let n = names::decode(mb, s.utf8())?;
    (n == ROOT || n.starts_with(PREFIX)).then_some(n)
}

/// What [`route`] did with a command.
enum Routed {
    /// Not about a shared mailbox: the ordinary dispatch runs it.
    Pass(CommandBody<'static>),
    /// Answered here with this tagged response.
    Answer(Tagged),
    /// Run (tagged response written).
    Ran(Flow),
}

/// Checks and routes one command (see the module documentation). `Ok` gives the command back
/// to the ordinary dispatch; `Err` means it was answered here.
pub(crate) fn route(
    s: &mut Session,
    cmd: Command<'static>,
    out: &mut Vec<u8>,
) -> Result<Command<'static>, Flow> {
    if s.shared.running || s.state.user().is_none() {
        return Ok(cmd);
    }
    let sel_rights = s.selected_shared();
    let Command { tag, body } = cmd;
    let routed = route_body(s, &tag, body, sel_rights, out);
    match routed {
        Routed::Pass(body) => Ok(Command { tag, body }),
        Routed::Answer(t) => {
            t.write(out, tag.inner());
            Err(Flow::Continue)
        }
        Routed::Ran(flow) => Err(flow),
    }
}

type WireTag = imap_codec::imap_types::core::Tag<'static>;

fn route_body(
    s: &mut Session,
    tag: &WireTag,
    body: CommandBody<'static>,
    sel_rights: Option<Rights>,
    out: &mut Vec<u8>,
) -> Routed {
    use Routed::{Answer, Pass};
    match body {
        CommandBody::Select {
            mailbox,
            parameters,
        } => match shared_name(s, &mailbox) {
            Some(n) => select(s, tag, &n, parameters, false, out),
            None => Pass(CommandBody::Select {
                mailbox,
                parameters,
            }),
        },
        CommandBody::Examine {
            mailbox,
            parameters,
        } => match shared_name(s, &mailbox) {
            Some(n) => select(s, tag, &n, parameters, true, out),
            None => Pass(CommandBody::Examine {
                mailbox,
                parameters,
            }),
        },
        CommandBody::Status {
            mailbox,
            item_names,
        } => match shared_name(s, &mailbox) {
            Some(n) => Answer(status(s, &n, &item_names, out)),
            None => Pass(CommandBody::Status {
                mailbox,
                item_names,
            }),
        },
        CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            }),
            Some(n) => {
                let a = match need(s, &n, "i") {
                    Ok(a) => a,
                    Err(t) => return Answer(t),
                };
                // RFC 4314 §4: flags the user may not set are ignored, not refused.
                let flags = allowed_flags(flags, a.rights);
                run_as(s, tag, &a, out, |mailbox| CommandBody::Append {
                    mailbox,
                    flags,
                    date,
                    message,
                })
            }
        },
        CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        } => copy_move(s, tag, sequence_set, mailbox, uid, false, sel_rights, out),
        CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        } => copy_move(s, tag, sequence_set, mailbox, uid, true, sel_rights, out),
        CommandBody::Create { mailbox } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::Create { mailbox }),
            Some(n) => create(s, tag, &n, out),
        },
        CommandBody::Delete { mailbox } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::Delete { mailbox }),
            Some(n) => {
                let a = match need(s, &n, "x") {
                    Ok(a) => a,
                    Err(t) => return Answer(t),
                };
                if s.state.sel().is_some_and(|x| x.name == a.full) {
                    s.state.unselect();
                }
                let owner = a.owner.clone();
                let ran = run_as(s, tag, &a, out, |mailbox| CommandBody::Delete { mailbox });
                if let Err(e) = s.reindex(&owner) {
                    tracing::warn!(owner = %owner.name, error = %e, "sharing index not updated");
                }
                ran
            }
        },
        CommandBody::Rename { from, to } => match (shared_name(s, &from), shared_name(s, &to)) {
            (None, None) => Pass(CommandBody::Rename { from, to }),
            (f, t) => rename(s, tag, f, t, out),
        },
        CommandBody::Subscribe { mailbox } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::Subscribe { mailbox }),
            Some(n) => Answer(subscribe(s, &n, true, out)),
        },
        CommandBody::Unsubscribe { mailbox } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::Unsubscribe { mailbox }),
            Some(n) => Answer(subscribe(s, &n, false, out)),
        },
        CommandBody::GetMetadata {
            options,
            mailbox,
            entries,
        } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::GetMetadata {
                options,
                mailbox,
                entries,
            }),
            Some(n) => {
                let a = match need(s, &n, "r") {
                    Ok(a) => a,
                    Err(t) => return Answer(t),
                };
                // RFC 5464 §3.2: private entries are "specific to the user": the owner's
                // are not the grantee's, and the grantee has none here (the owner's files
                // hold only the owner's), so only /shared entries are looked up.
                let kept: Vec<_> = entries
                    .into_iter()
                    .filter(|e| {
                        let b: &[u8] = e.as_ref();
                        let private = b
                            .get(..8)
                            .is_some_and(|p| p.eq_ignore_ascii_case(b"/private"))
                            && matches!(b.get(8), None | Some(b'/'));
                        !private
                    })
                    .collect();
                let Ok(entries) = imap_codec::imap_types::core::Vec1::try_from(kept) else {
                    return Answer(s.done(out, "GETMETADATA completed"));
                };
                let start = out.len();
                let utf8 = s.utf8();
                let ran = run_as(s, tag, &a, out, |mailbox| CommandBody::GetMetadata {
                    options,
                    mailbox,
                    entries,
                });
                rename_in(out, start, b"* METADATA ", &a.folder, &a.full, utf8);
                ran
            }
        },
        CommandBody::SetMetadata {
            mailbox,
            entry_values,
        } => match shared_name(s, &mailbox) {
            None => Pass(CommandBody::SetMetadata {
                mailbox,
                entry_values,
            }),
            Some(n) => match s.shared_access(&n) {
                Some(Ok(a)) if a.rights.has('l') => Answer(Tagged::no(
                    other("NOPERM"),
                    "Annotations of another user's mailbox cannot be changed",
                )),
                Some(Err(t)) => Answer(t),
                _ => Answer(nonexistent()),
            },
        },
        // ----- the selected shared mailbox (RFC 4314 §4) -----
        CommandBody::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            modifiers,
        } if sel_rights.is_some() => {
            let rt = sel_rights.unwrap_or_default();
            let flags = if matches!(kind, StoreType::Replace) {
                // Replacing touches every flag.
                if !rt.contains(r("swt")) && !s.state.sel().is_some_and(|x| x.read_only) {
                    return Answer(deny(rt, "swt"));
                }
                flags
            } else {
                let had = !flags.is_empty();
                let kept = allowed_flags(flags, rt);
                // §4: STORE "SHOULD NOT fail if the user has rights to modify at least one
                // flag specified"; with none, it fails.
                if had && kept.is_empty() && !s.state.sel().is_some_and(|x| x.read_only) {
                    return Answer(deny(rt, "w"));
                }
                kept
            };
            Pass(CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            })
        }
        CommandBody::Expunge if sel_rights.is_some_and(|r| !r.has('e')) => {
            Answer(deny(sel_rights.unwrap_or_default(), "e"))
        }
        CommandBody::ExpungeUid { .. } if sel_rights.is_some_and(|r| !r.has('e')) => {
            Answer(deny(sel_rights.unwrap_or_default(), "e"))
        }
        CommandBody::Close if sel_rights.is_some_and(|r| !r.has('e')) => {
            // Without "e" CLOSE expunges nothing: it only leaves the mailbox.
            s.state.unselect();
            Answer(Tagged::ok("CLOSE completed"))
        }
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } if sel_rights.is_some_and(|r| !r.has('s'))
            && !s.state.sel().is_some_and(|x| x.read_only) =>
        {
            // §4: FETCH sets \Seen only with "s": everything is read as with .PEEK.
            let items = match macro_or_item_names {
                MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
                    let mut items = Vec::with_capacity(v.len());
                    for i in v {
                        items.push(match i {
                            MessageDataItemName::BodyExt {
                                section, partial, ..
                            } => MessageDataItemName::BodyExt {
                                section,
                                partial,
                                peek: true,
                            },
                            MessageDataItemName::Binary {
                                section, partial, ..
                            } => MessageDataItemName::Binary {
                                section,
                                partial,
                                peek: true,
                            },
                            MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => {
                                return Answer(Tagged::no(
                                    other("NOPERM"),
                                    "RFC822 would set \\Seen, which needs the \"s\" right: use BODY.PEEK[]",
                                ));
                            }
                            i => i,
                        });
                    }
                    MacroOrMessageDataItemNames::MessageDataItemNames(items)
                }
                m => m,
            };
            Pass(CommandBody::Fetch {
                sequence_set,
                macro_or_item_names: items,
                uid,
                modifiers,
            })
        }
        body => Pass(body),
    }
}

/// FETCH items for the selected shared mailbox when the user lacks "s": everything read as
/// with .PEEK (RFC 4314 §4: FETCH sets \Seen only with "s"). Called by `Session::fetch` for
/// every FETCH, including those that do not pass [`route`] (NOTIFY's MessageNew fetch-att,
/// extensions); RFC822 and RFC822.TEXT, which have no PEEK form, are read as BODY.PEEK[] and
/// BODY.PEEK[TEXT] there. Uses the rights of the last command (no file read).
pub(crate) fn fetch_items(
    s: &Session,
    names: MacroOrMessageDataItemNames<'static>,
) -> MacroOrMessageDataItemNames<'static> {
    let Some((full, _, _, rights)) = &s.shared.selected else {
        return names;
    };
    let Some(sel) = s.state.sel() else {
        return names;
    };
    if sel.name != *full || rights.has('s') || sel.read_only {
        return names;
    }
    let MacroOrMessageDataItemNames::MessageDataItemNames(v) = names else {
        return names;
    };
    use imap_codec::imap_types::fetch::Section;
    MacroOrMessageDataItemNames::MessageDataItemNames(
        v.into_iter()
            .map(|i| match i {
                MessageDataItemName::BodyExt {
                    section, partial, ..
                } => MessageDataItemName::BodyExt {
                    section,
                    partial,
                    peek: true,
                },
                MessageDataItemName::Binary {
                    section, partial, ..
                } => MessageDataItemName::Binary {
                    section,
                    partial,
                    peek: true,
                },
                MessageDataItemName::Rfc822 => MessageDataItemName::BodyExt {
                    section: None,
                    partial: None,
                    peek: true,
                },
                MessageDataItemName::Rfc822Text => MessageDataItemName::BodyExt {
                    section: Some(Section::Text(None)),
                    partial: None,
                    peek: true,
                },
                i => i,
            })
            .collect(),
    )
}

/// The access to a shared name, with `right` required.
fn need(s: &mut Session, name: &str, rights: &str) -> Result<Access, Tagged> {
    let a = match s.shared_access(name) {
        Some(r) => r?,
        None => return Err(nonexistent()),
    };
    if !a.rights.contains(r(rights)) {
        return Err(deny(a.rights, rights));
    }
    Ok(a)
}

/// Runs the command `make(folder)` on the owner's Maildir.
fn run_as(
    s: &mut Session,
    tag: &WireTag,
    a: &Access,
    out: &mut Vec<u8>,
    make: impl FnOnce(WireMailbox<'static>) -> CommandBody<'static>,
) -> Routed {
    let Some(mb) = wire(&a.folder, s.utf8()) else {
        return Routed::Answer(nonexistent());
    };
    let body = make(mb);
    let cmd = Command {
        tag: tag.clone(),
        body,
    };
    let owner = a.owner.clone();
    Routed::Ran(s.as_owner(&owner, |s| s.handle(cmd, out)))
}

/// The flags the rights allow setting: `\Seen` with "s", `\Deleted` with "t", others with "w".
fn allowed_flags(flags: Vec<Flag<'static>>, rights: Rights) -> Vec<Flag<'static>> {
    flags
        .into_iter()
        .filter(|f| match f {
            Flag::Seen => rights.has('s'),
            Flag::Deleted => rights.has('t'),
            _ => rights.has('w'),
        })
        .collect()
}

fn select(
    s: &mut Session,
    tag: &WireTag,
    name: &str,
    parameters: Vec<imap_codec::imap_types::command::SelectParameter>,
    examine: bool,
    out: &mut Vec<u8>,
) -> Routed {
    // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2), as the ordinary one.
    if s.state.unselect().is_some() && (s.enabled.qresync || s.enabled.rev2) {
        resp::untagged(out, "OK [CLOSED] Previous mailbox closed");
    }
    let a = match need(s, name, "r") {
        Ok(a) => a,
        Err(t) => return Routed::Answer(t),
    };
    let utf8 = s.utf8();
    let start = out.len();
    // §4: "the server SHOULD return READ-ONLY" without any right to change the mailbox.
    let writable = a.rights.intersects(r("swte"));
    // Such a SELECT is run as EXAMINE (RFC 3501 §6.3.2): it claims no \Recent, which the
    // owner would otherwise never see.
    let as_examine = examine || !writable;
    let ran = run_as(s, tag, &a, out, |mailbox| {
        if as_examine {
            CommandBody::Examine {
                mailbox,
                parameters,
            }
        } else {
            CommandBody::Select {
                mailbox,
                parameters,
            }
        }
    });
    let dir = a.owner.maildir.folder_dir(&a.folder).ok();
    if as_examine && !examine {
        let mut from = tag.inner().as_bytes().to_vec();
        from.extend_from_slice(b" OK [READ-ONLY] EXAMINE completed");
        let mut to = tag.inner().as_bytes().to_vec();
        to.extend_from_slice(b" OK [READ-ONLY] SELECT completed");
        if let Some(i) = out[start..]
            .windows(from.len())
            .position(|w| w == from.as_slice())
        {
            out.splice(start + i..start + i + from.len(), to);
        }
    }
    if let Some(sel) = s.state.sel_mut()
        && Some(sel.mbox.path()) == dir.as_deref()
    {
        sel.name = a.full.clone();
        if !writable {
            sel.read_only = true;
        }
        let ro = sel.read_only;
        s.shared.selected = Some((a.full.clone(), a.owner.clone(), a.folder.clone(), a.rights));
        patch_select(out, start, ro, a.rights, &a.folder, &a.full, utf8);
    }
    ran
}

/// Fixes what SELECT said for the owner's folder: READ-ONLY, the flags the rights let the
/// user change (§4), and the name in IMAP4rev2's LIST line.
fn patch_select(
    out: &mut Vec<u8>,
    start: usize,
    ro: bool,
    rights: Rights,
    folder: &str,
    full: &str,
    utf8: bool,
) {
    let Ok(mut text) = String::from_utf8(out[start..].to_vec()) else {
        return;
    };
    if ro {
        text = text.replace("[READ-WRITE]", "[READ-ONLY]");
    }
    const P: &str = "[PERMANENTFLAGS (";
    if let Some(i) = text.find(P)
        && let Some(j) = text[i + P.len()..].find(")]")
    {
        let inner = &text[i + P.len()..i + P.len() + j];
        let kept: Vec<&str> = if ro {
            Vec::new()
        } else {
            inner
                .split(' ')
                .filter(|t| !t.is_empty())
                .filter(|t| match *t {
                    "\\Seen" => rights.has('s'),
                    "\\Deleted" => rights.has('t'),
                    _ => rights.has('w'),
                })
                .collect()
        };
        let new = kept.join(" ");
        text.replace_range(i + P.len()..i + P.len() + j, &new);
    }
    out.truncate(start);
    out.extend_from_slice(text.as_bytes());
    rename_in(out, start, b"* LIST () \"/\" ", folder, full, utf8);
}

/// Replaces the mailbox name `folder` with `full` where it follows `prefix` at a line start
/// in `out[start..]`.
fn rename_in(out: &mut Vec<u8>, start: usize, prefix: &[u8], folder: &str, full: &str, utf8: bool) {
    let mut old = prefix.to_vec();
    resp::string(&mut old, names::encode(folder, utf8).as_bytes(), utf8);
    let mut new = prefix.to_vec();
    resp::string(&mut new, names::encode(full, utf8).as_bytes(), utf8);
    let mut i = start;
    while i + old.len() <= out.len() {
        let at_line = i == 0 || out[i - 1] == b'\n';
        if at_line && out[i..].starts_with(&old) {
            out.splice(i..i + old.len(), new.iter().copied());
            i += new.len();
        } else {
            i += 1;
        }
    }
}

fn status(s: &mut Session, name: &str, items: &[StatusDataItemName], out: &mut Vec<u8>) -> Tagged {
    let a = match need(s, name, "r") {
        Ok(a) => a,
        Err(t) => return t,
    };
    match status_line(s, &a, items, out) {
        Ok(()) => s.done(out, "STATUS completed"),
        Err(t) => t,
    }
}

fn status_line(
    s: &mut Session,
    a: &Access,
    items: &[StatusDataItemName],
    out: &mut Vec<u8>,
) -> Result<(), Tagged> {
    let m = a
        .owner
        .maildir
        .open_mailbox(&a.folder)
        .map_err(|e| super::session::store_error(&e))?;
    let recent = u32::try_from(m.unclaimed_recent()).unwrap_or(u32::MAX);
    let text = status_items(&m, items, recent);
    if items.contains(&StatusDataItemName::HighestModSeq) {
        s.enabled.condstore = true;
    }
    let utf8 = s.utf8();
    let mut line = b"* STATUS ".to_vec();
    resp::string(&mut line, names::encode(&a.full, utf8).as_bytes(), utf8);
    line.extend_from_slice(format!(" ({text})\r\n").as_bytes());
    out.extend_from_slice(&line);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn copy_move(
    s: &mut Session,
    tag: &WireTag,
    sequence_set: imap_codec::imap_types::sequence::SequenceSet,
    mailbox: WireMailbox<'static>,
    uid: bool,
    is_move: bool,
    sel_rights: Option<Rights>,
    out: &mut Vec<u8>,
) -> Routed {
    // RFC 6851 §3.3 with RFC 4314: MOVE takes the messages out of the source, which needs
    // "t" and "e" there.
    if is_move
        && let Some(rt) = sel_rights
        && !rt.contains(r("te"))
    {
        return Routed::Answer(deny(rt, "te"));
    }
    let make = move |mailbox| {
        if is_move {
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            }
        } else {
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            }
        }
    };
    let Some(n) = shared_name(s, &mailbox) else {
        return Routed::Pass(make(mailbox));
    };
    let a = match need(s, &n, "i") {
        Ok(a) => a,
        Err(t) => return Routed::Answer(t),
    };
    let start = out.len();
    let ran = run_as(s, tag, &a, out, make);
    // RFC 4314 §2.1: \Seen is set during COPY only with "s", \Deleted with "t", the other
    // flags with "w". The copies keep their source's flags (hard links), so the ones the
    // user may not set are taken off the new messages (named by COPYUID) at once.
    if !a.rights.contains(r("swt")) {
        strip_copied_flags(&a, &out[start..]);
    }
    ran
}

/// Takes the flags `a.rights` do not allow off the messages a COPY/MOVE made in the shared
/// mailbox (`[COPYUID v src dst]` in `out`).
fn strip_copied_flags(a: &Access, out: &[u8]) {
    use postern_maildir::{FlagOp, Flags};
    let Some(dst) = copyuid_dst(out) else {
        return;
    };
    let Ok(mut m) = a.owner.maildir.open_mailbox(&a.folder) else {
        return;
    };
    for uid in dst {
        let Some(meta) = m.get(uid) else {
            continue;
        };
        let f = &meta.flags;
        let w = a.rights.has('w');
        let take = Flags {
            seen: f.seen && !a.rights.has('s'),
            deleted: f.deleted && !a.rights.has('t'),
            answered: f.answered && !w,
            flagged: f.flagged && !w,
            draft: f.draft && !w,
            keywords: if w { Vec::new() } else { f.keywords.clone() },
        };
        if take != Flags::default()
            && let Err(e) = m.store_flags(uid, FlagOp::Remove, &take, None)
        {
            tracing::warn!(owner = %a.owner.name, folder = %a.folder, uid, error = %e,
                "flags of a copied message not taken off");
        }
    }
}

/// The destination UIDs of the last `[COPYUID v src dst]` in `out` (at most 1,000,000).
fn copyuid_dst(out: &[u8]) -> Option<Vec<u32>> {
    const P: &[u8] = b"[COPYUID ";
    let at = out.windows(P.len()).rposition(|w| w == P)? + P.len();
    let rest = &out[at..];
    let end = rest.iter().position(|&b| b == b']')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let set = text.split(' ').nth(2)?;
    let mut uids = Vec::new();
    for part in set.split(',') {
        let (lo, hi) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let u = part.parse::<u32>().ok()?;
                (u, u)
            }
        };
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        if uids.len() + (hi - lo) as usize >= 1_000_000 {
            return None;
        }
        uids.extend(lo..=hi);
    }
    Some(uids)
}

/// The parent of a folder, `None` at the top.
fn parent(folder: &str) -> Option<&str> {
    folder.rsplit_once('/').map(|(p, _)| p)
}

fn top_level() -> Tagged {
    Tagged::no(
        other("NOPERM"),
        "Mailboxes cannot be created at the top of another user's namespace",
    )
}

fn create(s: &mut Session, tag: &WireTag, name: &str, out: &mut Vec<u8>) -> Routed {
    let name = name.strip_suffix('/').unwrap_or(name);
    let (owner, folder) = match classify(name) {
        Target::Mailbox { owner, folder } => (owner, folder),
        Target::Invalid => {
            return Routed::Answer(Tagged::no(other("CANNOT"), "Invalid mailbox name"));
        }
        Target::Root | Target::OwnerRoot(_) | Target::Personal => {
            return Routed::Answer(Tagged::no(
                other("CANNOT"),
                "Shared is the namespace of other users' mailboxes",
            ));
        }
    };
    // §4: CREATE needs "k" on the parent.
    let Some(p) = parent(&folder) else {
        return Routed::Answer(top_level());
    };
    let pfull = format!("{PREFIX}{owner}/{p}");
    let pa = match need(s, &pfull, "k") {
        Ok(a) => a,
        Err(t) => return Routed::Answer(t),
    };
    let a = Access {
        owner: pa.owner.clone(),
        folder: folder.clone(),
        rights: pa.rights,
        full: name.to_owned(),
    };
    // Only a mailbox this CREATE made gets the parent's ACL: an existing one (the owner's
    // private `Team/Private`, whose CREATE fails) keeps its own.
    let existed = pa.owner.maildir.folder_exists(&folder).unwrap_or(true);
    let start = out.len();
    let ran = run_as(s, tag, &a, out, |mailbox| CommandBody::Create { mailbox });
    let ok = {
        let mut ok_line = tag.inner().as_bytes().to_vec();
        ok_line.extend_from_slice(b" OK");
        out[start..]
            .split(|&b| b == b'\n')
            .any(|l| l.starts_with(&ok_line))
    };
    // Like Dovecot, a new mailbox starts with its parent's ACL (so its creator keeps access).
    if !existed
        && ok
        && let Ok(Ok(parent_acl)) = pa.owner.maildir.acl(&pa.folder)
        && !parent_acl.entries.is_empty()
        && pa.owner.maildir.folder_exists(&folder).unwrap_or(false)
        && matches!(pa.owner.maildir.acl(&folder), Ok(Ok(a)) if a.entries.is_empty())
    {
        let _ = pa
            .owner
            .maildir
            .update_acl(&folder, |acl| *acl = parent_acl);
    }
    ran
}

fn rename(
    s: &mut Session,
    tag: &WireTag,
    from: Option<String>,
    to: Option<String>,
    out: &mut Vec<u8>,
) -> Routed {
    let cannot = || {
        Routed::Answer(Tagged::no(
            other("CANNOT"),
            "Mailboxes cannot be renamed between users",
        ))
    };
    let (Some(from), Some(to)) = (from, to) else {
        return cannot();
    };
    let (
        Target::Mailbox {
            owner: o1,
            folder: f1,
        },
        Target::Mailbox {
            owner: o2,
            folder: f2,
        },
    ) = (classify(&from), classify(&to))
    else {
        return cannot();
    };
    if !o1.eq_ignore_ascii_case(&o2) {
        return cannot();
    }
    let a = match need(s, &from, "x") {
        Ok(a) => a,
        Err(t) => return Routed::Answer(t),
    };
    // Renaming a mailbox renames its inferiors (RFC 9051 §6.3.6; not INBOX's): each needs
    // "x" too, or the rename would move mailboxes the user may not rename.
    if !f1.eq_ignore_ascii_case("INBOX") {
        let user = s.user_name().unwrap_or_default();
        let Ok(all) = a.owner.maildir.list_folders() else {
            return Routed::Answer(Tagged::no(other("SERVERBUG"), "Mailboxes cannot be listed"));
        };
        let prefix = format!("{f1}/");
        if all
            .iter()
            .filter(|c| c.starts_with(&prefix))
            .any(|c| !a.owner.maildir.rights(c, &a.owner.name, &user).has('x'))
        {
            return Routed::Answer(Tagged::no(
                other("NOPERM"),
                "Permission denied: renaming this mailbox would rename mailboxes below it \
                 without the \"x\" right (RFC 4314)",
            ));
        }
    }
    let Some(p) = parent(&f2) else {
        return Routed::Answer(top_level());
    };
    if let Err(t) = need(s, &format!("{PREFIX}{o2}/{p}"), "k") {
        return Routed::Answer(t);
    }
    if s.state.sel().is_some_and(|x| x.name == a.full) {
        s.state.unselect();
    }
    let Some(to_wire) = wire(&f2, s.utf8()) else {
        return Routed::Answer(nonexistent());
    };
    run_as(s, tag, &a, out, |from| CommandBody::Rename {
        from,
        to: to_wire,
    })
}

/// MULTIAPPEND/CATENATE (`cmd/multiappend.rs`, parsed by `cmd/ext.rs`) into a shared
/// mailbox: "i" as for APPEND, flags without their right dropped, run on the owner's Maildir.
/// CATENATE is refused there: its URLs would be resolved in the owner's Maildir, reaching
/// mailboxes the user has no right to read. `None`: not a shared name, the ordinary code runs.
pub(crate) fn multiappend(
    s: &mut Session,
    cmd: &super::cmd::multiappend::Append,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Option<Tagged> {
    use super::cmd::multiappend::Data;
    if s.shared.running {
        return None;
    }
    let name = names::decode_bytes(&cmd.mailbox, s.utf8())?;
    if name != ROOT && !name.starts_with(PREFIX) {
        return None;
    }
    let a = match need(s, &name, "i") {
        Ok(a) => a,
        Err(t) => return Some(t),
    };
    if cmd
        .messages
        .iter()
        .any(|m| matches!(m.data, Data::Catenate(_)))
    {
        return Some(Tagged::no(
            other("NOPERM"),
            "CATENATE into another user's mailbox is not supported; APPEND the message",
        ));
    }
    let mut cmd = cmd.clone();
    for m in &mut cmd.messages {
        let f = &mut m.flags;
        f.seen &= a.rights.has('s');
        f.deleted &= a.rights.has('t');
        if !a.rights.has('w') {
            f.answered = false;
            f.flagged = false;
            f.draft = false;
            f.keywords.clear();
        }
    }
    cmd.mailbox = names::encode(&a.folder, s.utf8()).into_bytes();
    let owner = a.owner.clone();
    Some(s.as_owner(&owner, |s| s.multiappend(&cmd, raw, out)))
}

// ----- subscriptions to shared mailboxes -----

fn subs_path(md: &Maildir) -> PathBuf {
    md.root().join(SUBS_FILE)
}

/// The user's subscriptions to shared mailboxes.
fn read_subs(md: &Maildir) -> Vec<String> {
    let Ok(f) = std::fs::File::open(subs_path(md)) else {
        return Vec::new();
    };
    let mut text = String::new();
    if f.take(1 << 20).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter(|l| matches!(classify(l), Target::Mailbox { .. }))
        .take(MAX_SUBS)
        .map(str::to_owned)
        .collect()
}

fn subscribe(s: &mut Session, name: &str, on: bool, out: &mut Vec<u8>) -> Tagged {
    if on {
        // Subscribing needs the mailbox to be visible ("l"), so a subscription cannot be
        // used to probe for names.
        if let Err(t) = need(s, name, "l") {
            return t;
        }
    }
    let Some(md) = s.state.user().map(|u| u.maildir.clone()) else {
        return Tagged::bad("Log in first");
    };
    let path = subs_path(&md);
    let lock = match postern_maildir::dotlock::DotLock::acquire(
        &path,
        Duration::from_secs(10),
        Duration::from_secs(120),
        md.file_mode(),
    ) {
        Ok(l) => l,
        Err(e) => return super::session::store_error(&e),
    };
    let mut subs = read_subs(&md);
    let before = subs.clone();
    subs.retain(|n| n != name);
    if on {
        if subs.len() >= MAX_SUBS {
            return Tagged::no(other("LIMIT"), "Too many subscriptions");
        }
        subs.push(name.to_owned());
    }
    if subs == before {
        drop(lock);
    } else {
        let mut text = String::new();
        for n in &subs {
            text.push_str(n);
            text.push('\n');
        }
        if let Err(e) = lock.replace(text.as_bytes()) {
            return super::session::store_error(&e);
        }
    }
    s.done(
        out,
        if on {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        },
    )
}

// ----- LIST -----

/// Every shared mailbox the user may look up: owner → (folder, rights).
fn visible(s: &mut Session) -> BTreeMap<String, Vec<(String, Rights, Arc<Owner>)>> {
    let mut map = BTreeMap::new();
    let Some(user) = s.user_name() else {
        return map;
    };
    let Some(index) = s.shared.index.clone() else {
        return map;
    };
    let owners = match index.owners_for(&user) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "sharing index unreadable");
            return map;
        }
    };
    let mut total = 0u64;
    for owner in owners.into_iter().take(MAX_OWNERS) {
        if total >= LIST_ACL_BYTES {
            break;
        }
        let Ok(o) = s.shared_owner(&owner) else {
            continue;
        };
        if o.name.eq_ignore_ascii_case(&user) {
            continue;
        }
        let mut folders = vec!["INBOX".to_owned()];
        folders.extend(
            o.maildir
                .list_folders()
                .unwrap_or_default()
                .into_iter()
                .take(MAX_FOLDERS),
        );
        let mut v = Vec::new();
        let mut spent = 0u64;
        for f in folders {
            if spent >= OWNER_ACL_BYTES || total + spent >= LIST_ACL_BYTES {
                tracing::warn!(owner = %o.name, bytes = spent,
                    "LIST: ACL files of this owner too large, the rest of their folders skipped");
                break;
            }
            let (rights, n) = o.maildir.rights_counted(&f, &o.name, &user);
            spent += n;
            if rights.has('l') {
                v.push((f, rights, o.clone()));
            }
        }
        total += spent;
        if !v.is_empty() {
            map.insert(o.name.clone(), v);
        }
    }
    map
}

/// Whether `reference` + `pattern` may match a name under `Shared`: its literal start (up to
/// the first wildcard) must be a prefix of `Shared/` or start with it.
pub(crate) fn may_reach_shared(reference: &str, pattern: &str) -> bool {
    let full = format!("{reference}{pattern}");
    let lit: String = full
        .chars()
        .take_while(|c| *c != '*' && *c != '%')
        .collect();
    PREFIX.starts_with(lit.as_str()) || lit.starts_with(PREFIX)
}

/// A selectable row of a LIST: the rights, the owner and the folder.
type Row = (Rights, Arc<Owner>, String);

/// Adds the shared mailboxes matching a LIST/LSUB to its answer (called by `Session::list`
/// before its tagged OK).
pub(crate) fn list_shared(
    s: &mut Session,
    reference: &str,
    patterns: &[String],
    opts: &ListOpts,
    lsub: bool,
    out: &mut Vec<u8>,
) {
    if s.shared.running || s.shared.resolver.is_none() || opts.sel_special_use {
        return;
    }
    // Most LISTs cannot reach `Shared` (`LIST "" INBOX`, `LIST "" Archive/%`): they cost
    // no look at the index or at other users' folders.
    if !patterns.iter().any(|p| may_reach_shared(reference, p)) {
        return;
    }
    let pats: Vec<Pattern> = patterns
        .iter()
        .map(|p| Pattern::new(reference, p))
        .collect();
    let matches = |n: &str| pats.iter().any(|p| p.matches(n));
    let Some(md) = s.state.user().map(|u| u.maildir.clone()) else {
        return;
    };
    let subs: BTreeSet<String> = read_subs(&md).into_iter().collect();
    let vis = visible(s);
    // Every name with its row: (attributes, mailbox access when selectable).
    let mut rows: BTreeMap<String, (bool, Option<Row>)> = BTreeMap::new();
    for (owner, boxes) in &vis {
        rows.insert(ROOT.to_owned(), (true, None));
        rows.insert(format!("{PREFIX}{owner}"), (true, None));
        for (f, rights, o) in boxes {
            rows.insert(
                format!("{PREFIX}{owner}/{f}"),
                (false, Some((*rights, o.clone(), f.clone()))),
            );
        }
    }
    let names: Vec<String> = rows.keys().cloned().collect();
    let has_children = |n: &str| {
        let p = format!("{n}/");
        names.iter().any(|x| x.starts_with(&p))
    };
    let kw = if lsub { "LSUB" } else { "LIST" };
    let subscribed_only = lsub || opts.sel_subscribed;
    let utf8 = s.utf8();
    for (name, (noselect, acc)) in &rows {
        if !matches(name) {
            continue;
        }
        let subscribed = subs.contains(name);
        if subscribed_only && (!subscribed || *noselect) {
            continue;
        }
        let mut attrs: Vec<&str> = Vec::new();
        if *noselect {
            attrs.push("\\Noselect");
        }
        if !lsub {
            attrs.push(if has_children(name) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if subscribed && (opts.sel_subscribed || opts.ret_subscribed) {
                attrs.push("\\Subscribed");
            }
        }
        let mut line = format!("* {kw} ({}) \"/\" ", attrs.join(" ")).into_bytes();
        resp::string(&mut line, names::encode(name, utf8).as_bytes(), utf8);
        line.extend_from_slice(b"\r\n");
        out.extend_from_slice(&line);
        if !lsub
            && let (Some(items), Some((rights, o, folder))) = (&opts.ret_status, acc)
            && rights.has('r')
        {
            let a = Access {
                owner: o.clone(),
                folder: folder.clone(),
                rights: *rights,
                full: name.clone(),
            };
            let _ = status_line(s, &a, items, out);
        }
    }
}

// ----- commands recovered by cmd/ext.rs -----

/// Wraps an extension's job: with a shared mailbox selected on which the user lacks any of
/// `s w t e`, the job sees it read-only (it cannot know the ACL).
pub(crate) fn guard_job(job: Job) -> Job {
    Box::new(move |s: &mut Session, out: &mut Vec<u8>| {
        let restrict = s
            .selected_shared()
            .is_some_and(|rt| !rt.contains(r("swte")));
        let before = s.state.sel().map(|x| (x.name.clone(), x.read_only));
        if restrict && let Some(sel) = s.state.sel_mut() {
            sel.read_only = true;
        }
        let flow = job(s, out);
        if restrict
            && let Some((name, ro)) = before
            && let Some(sel) = s.state.sel_mut()
            && sel.name == name
        {
            sel.read_only = ro;
        }
        flow
    })
}

// ----- authd's userdb, synchronously (the session runs on the blocking pool) -----

pub(crate) fn userdb_lookup(socket: &std::path::Path, name: &str) -> Lookup {
    use postern_auth_proto::userdb::{
        UserdbReply, encode_user, encode_version, mail_location, parse_quota_rule,
        parse_userdb_reply,
    };
    if acl::check_name(name).is_err() || name.contains('\t') {
        return Lookup::NotFound;
    }
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        tracing::warn!(socket = %socket.display(), "authd userdb socket unavailable");
        return Lookup::Unavailable;
    };
    let _ = stream.set_read_timeout(Some(USERDB_TIMEOUT));
    let _ = stream.set_write_timeout(Some(USERDB_TIMEOUT));
    let req = format!(
        "{}{}",
        encode_version(),
        encode_user(1, name, &[("service", "imap")])
    );
    if (&stream).write_all(req.as_bytes()).is_err() {
        return Lookup::Unavailable;
    }
    let mut reader = std::io::BufReader::new(&stream);
    for _ in 0..64 {
        let mut line = String::new();
        match (&mut reader).take(64 * 1024).read_line(&mut line) {
            Ok(0) | Err(_) => return Lookup::Unavailable,
            Ok(_) => {}
        }
        let Ok(reply) = parse_userdb_reply(line.trim_end_matches(['\r', '\n'])) else {
            continue;
        };
        match reply {
            UserdbReply::User {
                id: 1,
                user,
                fields,
            } => {
                if fields.get("host").is_some() {
                    return Lookup::Remote;
                }
                let Some(home) = fields.get("home").map(PathBuf::from) else {
                    return Lookup::Unavailable;
                };
                let root = match fields.get("mail").map(|m| mail_location(m, &home)) {
                    Some(Ok(p)) => p,
                    Some(Err(_)) => return Lookup::Unavailable,
                    None => home.join("Maildir"),
                };
                // Never create another user's Maildir: no Maildir, nothing shared.
                if !root.join("cur").is_dir() {
                    return Lookup::NotFound;
                }
                let Ok(maildir) = Maildir::open_or_create(&root, Maildir::DEFAULT_DIR_MODE) else {
                    return Lookup::Unavailable;
                };
                return Lookup::Found(Arc::new(Owner {
                    name: user,
                    maildir,
                    quota_bytes: fields.get("quota_rule").and_then(parse_quota_rule),
                }));
            }
            UserdbReply::NotFound { id: 1 } => return Lookup::NotFound,
            UserdbReply::Fail { id: 1, .. } => return Lookup::Unavailable,
            _ => {}
        }
    }
    Lookup::Unavailable
}
