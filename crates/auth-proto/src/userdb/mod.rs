//! The Dovecot auth master / userdb socket protocol: how delivery agents (lmtp-deliver,
//! Dovecot's LMTP) and tools ask who a user is and where their mail lives.
//!
//! ```text
//! S: VERSION\t1\t0            S: SPID\t<pid>              (the server speaks first)
//! C: VERSION\t1\t0
//! C: USER\t<id>\t<user>\tservice=lmtp    S: USER\t<id>\t<user>\thome=…\tuid=…  | NOTFOUND\t<id> | FAIL\t<id>\treason=…
//! C: PASS\t<id>\t<user>\tservice=smtp    S: PASS\t<id>\tuser=<user>\t…       | NOTFOUND\t<id> | FAIL\t<id>\treason=…
//! C: LIST\t<id>[\tuser=<mask>]           S: LIST\t<id>\t<user> (repeated), then DONE\t<id>[\tfail]
//! ```
//! All arguments are [escaped](mod@crate::escape). [`request`] has the client's lines (parser for
//! the server, encoders for the client), [`reply`] the server's. `FAIL` means "we could not
//! look" (a temporary failure), `NOTFOUND` "no such user". The master-only commands
//! (`REQUEST`, `CACHE-FLUSH`, …) are not spoken: they parse as an unknown command.

pub mod reply;
pub mod request;

pub use reply::{
    UserdbReply, fail, greeting, list_done, list_entry, not_found, parse_userdb_reply, pass_found,
    user_found,
};
pub use request::{
    MasterCommand, encode_list, encode_pass, encode_user, encode_version, parse_master_line,
};

/// The protocol major version both sides must share.
pub const MAJOR_VERSION: u32 = 1;
/// The minor version we send.
pub const MINOR_VERSION: u32 = 0;
/// A line limit for this protocol: user replies can carry many extra fields.
pub const MAX_LINE: usize = 65536;
