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

/// `maildir:~/Maildir:INDEX=…` → the Maildir path (options after the path are ignored).
pub fn mail_location(loc: &str, home: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let rest = loc
        .strip_prefix("maildir:")
        .ok_or_else(|| format!("unsupported mail location {loc:?} (only maildir:)"))?;
    let path = rest.split(':').next().unwrap_or("");
    if path.is_empty() {
        return Err("empty mail location".into());
    }
    Ok(match path.strip_prefix("~/") {
        Some(rel) => home.join(rel),
        None if path == "~" => home.to_owned(),
        None => std::path::PathBuf::from(path),
    })
}

/// Dovecot's `*:storage=<n>[B|K|M|G|T]` (no unit means KiB, as in Dovecot) → bytes.
pub fn parse_quota_rule(rule: &str) -> Option<u64> {
    let v = rule
        .split(':')
        .skip(1)
        .find_map(|p| p.strip_prefix("storage="))?;
    let v = v.trim();
    let (num, mult) = match v.chars().last()? {
        'B' | 'b' => (&v[..v.len() - 1], 1u64),
        'K' | 'k' => (&v[..v.len() - 1], 1 << 10),
        'M' | 'm' => (&v[..v.len() - 1], 1 << 20),
        'G' | 'g' => (&v[..v.len() - 1], 1 << 30),
        'T' | 't' => (&v[..v.len() - 1], 1 << 40),
        c if c.is_ascii_digit() => (v, 1 << 10),
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_rules() {
        assert_eq!(parse_quota_rule("*:storage=1073741824B"), Some(1 << 30));
        assert_eq!(parse_quota_rule("*:storage=100M"), Some(100 << 20));
        assert_eq!(parse_quota_rule("*:storage=10"), Some(10 << 10));
        assert_eq!(parse_quota_rule("*:messages=10"), None);
        assert_eq!(parse_quota_rule("*:storage=x"), None);
    }

    #[test]
    fn mail_locations() {
        let h = std::path::Path::new("/v/x/a");
        assert_eq!(
            mail_location("maildir:~/Maildir", h).unwrap(),
            std::path::PathBuf::from("/v/x/a/Maildir")
        );
        assert_eq!(
            mail_location("maildir:/m/a/Maildir:LAYOUT=fs", h).unwrap(),
            std::path::PathBuf::from("/m/a/Maildir")
        );
        assert!(mail_location("mbox:~/mail", h).is_err());
    }
}
