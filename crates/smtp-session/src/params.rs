//! `MAIL FROM` and `RCPT TO` arguments: the path and the ESMTP parameters.
//!
//! Parsed here rather than by smtp-proto, which accepts parameters of extensions we do not
//! advertise (`HOLDFOR`, `MT-PRIORITY`, `RRVS`, …), only the `rfc822` `ORCPT` type, and loses
//! the original text of quoted addresses. A parameter is accepted only when its extension is
//! advertised; others get `555 5.5.4`.

use crate::address::{self, Address, AddressError};
use crate::config::SessionConfig;
use crate::xtext::{decode_unitext, xtext_decode};

/// Parameters of `MAIL FROM`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870): the size the client announced.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152, RFC 3030).
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461), xtext-decoded.
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954), xtext-decoded; `<>` stays `<>`. Trusting it is the driver's choice.
    pub auth: Option<String>,
}

/// Parameters of `RCPT TO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=` (RFC 3461).
    pub orcpt: Option<Orcpt>,
}

/// The declared body type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME`.
    EightBitMime,
    /// `BINARYMIME` (only with `BDAT`).
    BinaryMime,
}

/// `RET=`: what a DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The whole message.
    Full,
    /// The headers only.
    Hdrs,
}

/// `NOTIFY=`: when to send a DSN; all `false` is `NEVER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Self = Self {
        success: false,
        failure: false,
        delay: false,
    };

    /// Whether this is `NEVER`.
    pub fn is_never(&self) -> bool {
        *self == Self::NEVER
    }
}

/// `ORCPT=addr-type;xtext`, kept encoded so that a relay can pass it on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// `rfc822` or `utf-8` (RFC 6533), as written.
    pub addr_type: String,
    /// The address, still xtext-encoded.
    pub value: String,
}

impl Orcpt {
    /// The decoded address (`+HH`, and for `utf-8` also `\x{HEX}`).
    pub fn address(&self) -> Option<String> {
        if self.addr_type.eq_ignore_ascii_case("utf-8") {
            decode_unitext(&self.value)
        } else {
            xtext_decode(&self.value)
        }
    }
}

/// Why `MAIL` or `RCPT` arguments were refused; the session turns this into a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// Not `FROM:<path>` / `TO:<path>` followed by parameters.
    #[error("syntax error")]
    Syntax,
    /// A bad mailbox.
    #[error("bad address: {0}")]
    Address(#[from] AddressError),
    /// A known parameter with a bad value.
    #[error("invalid {0} parameter")]
    Invalid(String),
    /// The same parameter twice.
    #[error("duplicate {0} parameter")]
    Duplicate(String),
    /// A parameter of an extension we do not advertise.
    #[error("unsupported parameter {0}")]
    Unsupported(String),
}

/// `MAIL` arguments (after the verb): the sender (`None` for `<>`) and its parameters.
pub(crate) fn parse_mail(
    args: &str,
    config: &SessionConfig,
) -> Result<(Option<Address>, MailParams), ParamError> {
    let (path, rest) = split_path(args, "FROM:")?;
    let sender = match address::strip_route(path)? {
        "" => None,
        mailbox => Some(Address::parse(mailbox)?),
    };
    let ext = &config.extensions;
    let mut p = MailParams::default();
    for (key, value) in esmtp_params(rest)? {
        let upper = key.to_ascii_uppercase();
        match (upper.as_str(), value) {
            ("SIZE", Some(v)) if ext.size => {
                let size = v
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse().unwrap_or(u64::MAX));
                set(&mut p.size, size, &upper)?;
            }
            ("BODY", Some(v)) if ext.eightbitmime || config.binarymime() => {
                let body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Some(BodyType::SevenBit),
                    "8BITMIME" if ext.eightbitmime => Some(BodyType::EightBitMime),
                    "BINARYMIME" if config.binarymime() => Some(BodyType::BinaryMime),
                    _ => None,
                };
                set(&mut p.body, body, &upper)?;
            }
            ("SMTPUTF8", None) if ext.smtputf8 => {
                if std::mem::replace(&mut p.smtputf8, true) {
                    return Err(ParamError::Duplicate(upper));
                }
            }
            ("RET", Some(v)) if ext.dsn => {
                let ret = match v.to_ascii_uppercase().as_str() {
                    "FULL" => Some(Ret::Full),
                    "HDRS" => Some(Ret::Hdrs),
                    _ => None,
                };
                set(&mut p.ret, ret, &upper)?;
            }
            ("ENVID", Some(v)) if ext.dsn => {
                let envid = xtext_decode(v).filter(|e| (1..=MAX_ENVID).contains(&e.len()));
                set(&mut p.envid, envid, &upper)?;
            }
            ("AUTH", Some(v)) if !ext.auth.is_empty() => {
                let auth = if v == "<>" {
                    Some(v.to_owned())
                } else {
                    xtext_decode(v)
                };
                set(&mut p.auth, auth, &upper)?;
            }
            _ => return Err(ParamError::Unsupported(upper)),
        }
    }
    Ok((sender, p))
}

/// `RCPT` arguments (after the verb). `<Postmaster>` means postmaster at our hostname.
pub(crate) fn parse_rcpt(
    args: &str,
    config: &SessionConfig,
) -> Result<(Address, RcptParams), ParamError> {
    let (path, rest) = split_path(args, "TO:")?;
    let recipient = match address::strip_route(path)? {
        "" => return Err(AddressError::Empty.into()),
        pm if pm.eq_ignore_ascii_case("postmaster") => Address::postmaster(&config.hostname)?,
        mailbox => Address::parse(mailbox)?,
    };
    let mut p = RcptParams::default();
    for (key, value) in esmtp_params(rest)? {
        let upper = key.to_ascii_uppercase();
        match (upper.as_str(), value) {
            ("NOTIFY", Some(v)) if config.extensions.dsn => {
                set(&mut p.notify, parse_notify(v), &upper)?;
            }
            ("ORCPT", Some(v)) if config.extensions.dsn => {
                let orcpt = v.split_once(';').and_then(|(addr_type, value)| {
                    let orcpt = Orcpt {
                        addr_type: addr_type.to_owned(),
                        value: value.to_owned(),
                    };
                    let ok = !addr_type.is_empty() && v.len() <= MAX_ORCPT;
                    (ok && orcpt.address().is_some_and(|a| !a.is_empty())).then_some(orcpt)
                });
                set(&mut p.orcpt, orcpt, &upper)?;
            }
            _ => return Err(ParamError::Unsupported(upper)),
        }
    }
    Ok((recipient, p))
}

fn parse_notify(value: &str) -> Option<Notify> {
    if value.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::NEVER);
    }
    let mut n = Notify::default();
    for word in value.split(',') {
        let flag = match word.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut n.success,
            "FAILURE" => &mut n.failure,
            "DELAY" => &mut n.delay,
            _ => return None,
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    Some(n)
}

/// Stores a parameter value; `None` (a bad value) and a second occurrence are errors.
fn set<T>(slot: &mut Option<T>, value: Option<T>, key: &str) -> Result<(), ParamError> {
    let value = value.ok_or_else(|| ParamError::Invalid(key.to_owned()))?;
    if slot.replace(value).is_some() {
        return Err(ParamError::Duplicate(key.to_owned()));
    }
    Ok(())
}

/// Splits `FROM:<path> rest` into the path (between the brackets) and the rest. A space
/// after the colon is tolerated, as most servers do.
fn split_path<'a>(args: &'a str, keyword: &str) -> Result<(&'a str, &'a str), ParamError> {
    let args = args.trim_start_matches(' ');
    let head = args.get(..keyword.len()).ok_or(ParamError::Syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(ParamError::Syntax);
    }
    let path = args[keyword.len()..].trim_start_matches(' ');
    let inner = path.strip_prefix('<').ok_or(ParamError::Syntax)?;
    let bytes = inner.as_bytes();
    let (mut i, mut quoted) = (0, false);
    let close = loop {
        match bytes.get(i) {
            None => return Err(ParamError::Syntax),
            Some(b'"') => quoted = !quoted,
            Some(b'\\') if quoted => i += 1,
            Some(b'>') if !quoted => break i,
            Some(_) => {}
        }
        i += 1;
    };
    let rest = &inner[close + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(ParamError::Syntax);
    }
    Ok((&inner[..close], rest))
}

/// `keyword[=value]` pairs separated by spaces (RFC 5321 §4.1.2, UTF-8 values per RFC 6531).
fn esmtp_params(rest: &str) -> Result<Vec<(&str, Option<&str>)>, ParamError> {
    let mut params = Vec::new();
    for param in rest.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| (33..=126).contains(&b) && b != b'=' || b >= 0x80)
        });
        if !key_ok || !value_ok {
            return Err(ParamError::Syntax);
        }
        params.push((key, value));
    }
    Ok(params)
}

/// Octets in a decoded `ENVID`.
const MAX_ENVID: usize = 100;
/// Octets in an `ORCPT` value.
const MAX_ORCPT: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flavor;

    fn config() -> SessionConfig {
        let mut c = SessionConfig::new("mx.example", Flavor::Smtp);
        c.extensions.auth = vec!["PLAIN".into()];
        c
    }

    #[test]
    fn mail() {
        let (from, p) = parse_mail(
            "FROM:<a@b.example> size=100 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=x+2By AUTH=<>",
            &config(),
        )
        .unwrap();
        assert_eq!(from.unwrap().as_str(), "a@b.example");
        assert_eq!(p.size, Some(100));
        assert_eq!(p.body, Some(BodyType::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x+y"));
        assert_eq!(p.auth.as_deref(), Some("<>"));
        assert_eq!(parse_mail("from: <>", &config()).unwrap().0, None);
        let (from, _) = parse_mail("FROM:<@r.example:\"x y\"@b.example>", &config()).unwrap();
        assert_eq!(from.unwrap().as_str(), "\"x y\"@b.example");
    }

    #[test]
    fn mail_errors() {
        let c = config();
        let err = |args| parse_mail(args, &c).unwrap_err();
        assert_eq!(err("FROM:a@b"), ParamError::Syntax);
        assert_eq!(err("TO:<a@b>"), ParamError::Syntax);
        assert_eq!(err("FROM:<a@b>x"), ParamError::Syntax);
        assert_eq!(err("FROM:<a@b"), ParamError::Syntax);
        assert_eq!(err("FROM:<a@b> SIZE=="), ParamError::Syntax);
        assert_eq!(err("FROM:<a@b> SIZE=x"), ParamError::Invalid("SIZE".into()));
        assert_eq!(
            err("FROM:<a@b> SIZE=1 SIZE=2"),
            ParamError::Duplicate("SIZE".into())
        );
        assert_eq!(
            err("FROM:<a@b> BODY=BINARYMIME"),
            ParamError::Invalid("BODY".into())
        );
        assert_eq!(
            err("FROM:<a@b> HOLDFOR=10"),
            ParamError::Unsupported("HOLDFOR".into())
        );
        assert_eq!(
            err("FROM:<a b@c>"),
            ParamError::Address(AddressError::LocalPart)
        );
        let mut no_dsn = config();
        no_dsn.extensions.dsn = false;
        let e = parse_mail("FROM:<a@b> RET=FULL", &no_dsn).unwrap_err();
        assert_eq!(e, ParamError::Unsupported("RET".into()));
        let huge = parse_mail("FROM:<a@b> SIZE=99999999999999999999999", &c).unwrap();
        assert_eq!(huge.1.size, Some(u64::MAX));
    }

    #[test]
    fn rcpt() {
        let c = config();
        let (to, p) = parse_rcpt("TO:<u@x> NOTIFY=SUCCESS,delay ORCPT=rfc822;a+40b", &c).unwrap();
        assert_eq!(to.as_str(), "u@x");
        let notify = p.notify.unwrap();
        assert!(notify.success && notify.delay && !notify.failure);
        assert_eq!(p.orcpt.unwrap().address().as_deref(), Some("a@b"));
        let (to, p) = parse_rcpt("To:<Postmaster> NOTIFY=NEVER", &c).unwrap();
        assert_eq!(to.as_str(), "postmaster@mx.example");
        assert!(p.notify.unwrap().is_never());
        let (_, p) = parse_rcpt("TO:<u@x> ORCPT=utf-8;\\x{FC}ser@x", &c).unwrap();
        assert_eq!(p.orcpt.unwrap().address().as_deref(), Some("üser@x"));
        let err = |args| parse_rcpt(args, &c).unwrap_err();
        assert_eq!(err("TO:<>"), ParamError::Address(AddressError::Empty));
        assert_eq!(
            err("TO:<u@x> NOTIFY=NEVER,DELAY"),
            ParamError::Invalid("NOTIFY".into())
        );
        assert_eq!(
            err("TO:<u@x> ORCPT=rfc822"),
            ParamError::Invalid("ORCPT".into())
        );
        assert_eq!(err("TO:<u@x> FOO"), ParamError::Unsupported("FOO".into()));
    }
}
