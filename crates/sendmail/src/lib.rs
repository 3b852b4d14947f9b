//! `sendmail` for Postern: the traditional interface local programs (cron, PHP `mail()`,
//! scripts) use to send mail. It reads the message from stdin, completes its header the way
//! sendmail does, and hands it to smtpd over the control socket `smtpd` in the run
//! directory; smtpd records the caller's uid, commits the message durably and only then says
//! OK. It never writes the queue itself.
//!
//! ```text
//! sendmail [-t] [-i] [-oi] [-f sender] [-F fullname] [-v] [-C config] [--config config] [rcpt…]
//! sendmail -bp      (or run as `mailq`): list the queue
//! sendmail -q       flush the queue
//! sendmail -bi      (or run as `newaliases`): nothing to do (aliases are in the directory)
//! sendmail -bs      SMTP on stdin/stdout ([`smtp`]), each message submitted as above
//! ```
//!
//! Other traditional flags (`-odi`, `-oem`, `-N`, `-R`, `-V`, `-B`, `-h`, `-O`, …) are
//! accepted and ignored. Exit codes follow sysexits(3).
//!
//! Installed setgid `postdrop` and called by a user other than root, it reads the
//! compiled-in config path, or a file `-C`/`POSTERN_CONFIG` names only if root installed it
//! for that group (owner root, group postdrop, writable by root alone); any other ends in
//! EX_USAGE (64) before the file is read, and a parse error does not quote the file.
#![forbid(unsafe_code)]

pub mod smtp;

use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_control::{self as control, Client, ClientError, ErrorKind, Request, Response};

/// Exit codes (sysexits.h).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad command line.
    pub const USAGE: u8 = 64;
    /// Bad input data (message too large, mail loop).
    pub const DATAERR: u8 = 65;
    /// A bad address.
    pub const NOUSER: u8 = 67;
    /// A service is unavailable.
    pub const UNAVAILABLE: u8 = 69;
    /// Internal error (smtpd answered nonsense).
    pub const SOFTWARE: u8 = 70;
    /// Reading the message failed.
    pub const IOERR: u8 = 74;
    /// Try again later (smtpd not running, queue not writable).
    pub const TEMPFAIL: u8 = 75;
    /// Not allowed (socket permissions).
    pub const NOPERM: u8 = 77;
    /// The config file is missing or wrong.
    pub const CONFIG: u8 = 78;
}

/// What to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Send the message on stdin (`-bm`, the default).
    #[default]
    Deliver,
    /// List the queue (`-bp`, `mailq`).
    ListQueue,
    /// Flush the queue (`-q`).
    Flush,
    /// Rebuild aliases (`-bi`, `newaliases`): nothing to do.
    NewAliases,
    /// An SMTP session on stdin/stdout (`-bs`).
    Smtp,
}

/// A parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// What to do.
    pub mode: Mode,
    /// `-t`: recipients from To/Cc/Bcc too; Bcc removed.
    pub extract: bool,
    /// `-i`/`-oi`: a line "." does not end the message.
    pub ignore_dots: bool,
    /// `-f`/`-r`: envelope sender (`<>` or empty: the null sender).
    pub sender: Option<String>,
    /// `-F`: full name for a From header we add.
    pub full_name: Option<String>,
    /// `-C`/`--config`: the config file.
    pub config: Option<PathBuf>,
    /// `-v`: say what happened.
    pub verbose: bool,
    /// Recipients from the command line (comma-separated lists split).
    pub recipients: Vec<String>,
}

/// Options whose value is the rest of the argument or the next one.
const TAKES_VALUE: &str = "fFrCNRVXBhLOpA";

/// Parses `argv` (with `argv[0]`: `mailq` lists the queue, `newaliases` does nothing).
pub fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let name = argv
        .first()
        .map(|s| s.rsplit('/').next().unwrap_or(s))
        .unwrap_or("sendmail");
    if name.ends_with("mailq") {
        a.mode = Mode::ListQueue;
    } else if name.ends_with("newaliases") {
        a.mode = Mode::NewAliases;
    }
    let mut it = argv.iter().skip(1);
    let mut only_rcpts = false;
    while let Some(arg) = it.next() {
        if arg == "-" && !only_rcpts {
            continue;
        }
        if only_rcpts || !arg.starts_with('-') {
            add_recipients(&mut a.recipients, arg);
            continue;
        }
        if arg == "--" {
            only_rcpts = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some(("config", v)) => a.config = Some(PathBuf::from(v)),
                None if long == "config" => {
                    a.config = Some(PathBuf::from(it.next().ok_or("--config needs a file")?));
                }
                _ => return Err(format!("unknown option {arg}")),
            }
            continue;
        }
        let body = &arg[1..];
        for (i, c) in body.char_indices() {
            let rest = &body[i + c.len_utf8()..];
            match c {
                't' => a.extract = true,
                'i' => a.ignore_dots = true,
                'v' => a.verbose = true,
                'm' | 'n' | 'U' | 'G' | 'x' => {}
                'o' => {
                    // -oi (also -oitrue); everything else (-odi, -oem, -om, …) is ignored.
                    if rest == "i" || rest.eq_ignore_ascii_case("itrue") {
                        a.ignore_dots = true;
                    } else if rest.eq_ignore_ascii_case("ifalse") {
                        a.ignore_dots = false;
                    }
                    break;
                }
                'b' => {
                    a.mode = match rest {
                        "" | "m" => Mode::Deliver,
                        "p" => Mode::ListQueue,
                        "i" => Mode::NewAliases,
                        "s" => Mode::Smtp,
                        other => return Err(format!("-b{other} is not supported")),
                    };
                    break;
                }
                'q' => {
                    // -q, -q30m, -qR… : run the queue now.
                    a.mode = Mode::Flush;
                    break;
                }
                'd' | 'e' => break,
                c if TAKES_VALUE.contains(c) => {
                    let value = if rest.is_empty() {
                        it.next().cloned().ok_or(format!("-{c} needs a value"))?
                    } else {
                        rest.to_owned()
                    };
                    match c {
                        'f' | 'r' => a.sender = Some(value),
                        'F' => a.full_name = Some(value),
                        'C' => a.config = Some(PathBuf::from(value)),
                        _ => {}
                    }
                    break;
                }
                // Other traditional flags: accepted, ignored.
                _ => {}
            }
        }
    }
    Ok(a)
}

fn add_recipients(out: &mut Vec<String>, arg: &str) {
    out.extend(
        arg.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
}

/// Why the message could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Larger than the limit.
    TooLarge(u64),
    /// stdin failed.
    Io(io::Error),
}

/// Reads the message: to the end of input, or (without `ignore_dots`) to a line ".".
/// At most `max` bytes.
pub fn read_message<R: BufRead>(
    mut r: R,
    ignore_dots: bool,
    max: u64,
) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(max + 2 - out.len() as u64)
            .read_until(b'\n', &mut line)
            .map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        if !ignore_dots && matches!(line.as_slice(), b".\n" | b".\r\n" | b".") {
            break;
        }
        out.extend_from_slice(&line);
        if out.len() as u64 > max {
            return Err(ReadError::TooLarge(max));
        }
    }
    Ok(out)
}

/// What the header completion needs to know.
#[derive(Clone, Debug)]
pub struct Prepare<'a> {
    /// `-t`.
    pub extract: bool,
    /// The envelope sender, complete (`None`: the null sender).
    pub sender: Option<&'a str>,
    /// The full name for an added From.
    pub full_name: Option<&'a str>,
    /// Our host name (Message-ID, a From for the null sender).
    pub hostname: &'a str,
    /// The Date value to add.
    pub date: &'a str,
    /// The Message-ID value to add, with its angle brackets.
    pub message_id: &'a str,
}

/// One header field: its name (as written) and its raw bytes, folding and CRLF included.
struct Field {
    name: String,
    raw: Vec<u8>,
}

impl Field {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The unfolded value.
    fn value(&self) -> String {
        let raw = String::from_utf8_lossy(&self.raw);
        let v = raw.split_once(':').map_or("", |(_, v)| v);
        v.replace("\r\n", "").trim().to_owned()
    }
}

/// Splits a CRLF message into header fields and body. A line that is neither a field nor a
/// continuation ends the header (the body then starts there).
fn split_header(msg: &[u8]) -> (Vec<Field>, &[u8]) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |i| pos + i + 2);
        let line = &msg[pos..end];
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if text.is_empty() {
            return (fields, &msg[end..]);
        }
        if matches!(text[0], b' ' | b'\t')
            && let Some(last) = fields.last_mut()
        {
            last.raw.extend_from_slice(line);
        } else if let Some(colon) = text.iter().position(|&b| b == b':')
            && colon > 0
            && text[..colon].iter().all(|&b| (33..=126).contains(&b))
        {
            fields.push(Field {
                name: String::from_utf8_lossy(&text[..colon]).into_owned(),
                raw: line.to_vec(),
            });
        } else {
            return (fields, &msg[pos..]);
        }
        pos = end;
    }
    (fields, &[])
}

/// The addresses in an address-list header value (groups flattened, names dropped).
pub fn addresses(value: &str) -> Vec<String> {
    let mut synthetic = b"To: ".to_vec();
    synthetic.extend_from_slice(value.as_bytes());
    synthetic.extend_from_slice(b"\r\n\r\n");
    let Some(m) = mail_parser::MessageParser::default().parse(&synthetic) else {
        return Vec::new();
    };
    m.to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A display name for a header: as is when it is an atom sequence, quoted otherwise,
/// RFC 2047-encoded when not ASCII.
fn display_name(name: &str) -> String {
    use base64::Engine;
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    if !name.is_ascii() {
        return format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        );
    }
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c))
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Completes the header the way sendmail does: with `-t` the recipients of To/Cc/Bcc are
/// returned and Bcc removed; From, Date and Message-ID are added when missing. Line ends
/// become CRLF. Returns the message and the extracted recipients.
pub fn prepare(message: &[u8], p: &Prepare<'_>) -> (Vec<u8>, Vec<String>) {
    let msg = control::normalize_crlf(message);
    let (fields, body) = split_header(&msg);
    let mut rcpts = Vec::new();
    if p.extract {
        for f in &fields {
            if f.is("to") || f.is("cc") || f.is("bcc") {
                rcpts.extend(addresses(&f.value()));
            }
        }
    }
    let has = |n: &str| fields.iter().any(|f| f.is(n));
    let mut out = Vec::with_capacity(msg.len() + 256);
    for f in &fields {
        if p.extract && f.is("bcc") {
            continue;
        }
        out.extend_from_slice(&f.raw);
    }
    if !has("from") {
        let addr = match p.sender {
            Some(s) => s.to_owned(),
            None => format!("MAILER-DAEMON@{}", p.hostname),
        };
        let from = match p.full_name.filter(|n| !n.trim().is_empty()) {
            Some(n) => format!("From: {} <{addr}>\r\n", display_name(n)),
            None => format!("From: {addr}\r\n"),
        };
        out.extend_from_slice(from.as_bytes());
    }
    if !has("date") {
        out.extend_from_slice(format!("Date: {}\r\n", p.date).as_bytes());
    }
    if !has("message-id") {
        out.extend_from_slice(format!("Message-ID: {}\r\n", p.message_id).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    (out, rcpts)
}

/// A fresh Message-ID for `hostname`.
pub fn new_message_id(hostname: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!(
        "<{t:x}.{}.{:016x}@{hostname}>",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// The sysexits code for a refusal from smtpd.
pub fn exit_for(kind: Option<ErrorKind>) -> u8 {
    match kind {
        Some(ErrorKind::Usage) => exit::USAGE,
        Some(ErrorKind::Data | ErrorKind::TooLarge) => exit::DATAERR,
        Some(ErrorKind::BadAddress | ErrorKind::NotFound) => exit::NOUSER,
        Some(ErrorKind::Denied) => exit::NOPERM,
        Some(ErrorKind::Busy | ErrorKind::TempFail) => exit::TEMPFAIL,
        None => exit::UNAVAILABLE,
    }
}

fn client_exit(e: &ClientError) -> u8 {
    match e {
        ClientError::NotRunning(..) | ClientError::Io(_) => exit::TEMPFAIL,
        ClientError::Denied(_) => exit::NOPERM,
        ClientError::Protocol(_) => exit::SOFTWARE,
    }
}

/// Runs `sendmail` with `argv`; returns the exit code.
pub fn main_with(argv: &[String]) -> u8 {
    let prog = argv
        .first()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
        .unwrap_or_else(|| "sendmail".into());
    match run(argv) {
        Ok(()) => exit::OK,
        Err((code, msg)) => {
            eprintln!("{prog}: {msg}");
            code
        }
    }
}

type Fail = (u8, String);

fn run(argv: &[String]) -> Result<(), Fail> {
    let args = parse_args(argv).map_err(|e| (exit::USAGE, e))?;
    if args.mode == Mode::NewAliases {
        eprintln!("Postern keeps aliases in its directory (mailctl alias); nothing to rebuild");
        return Ok(());
    }
    let (path, from) = config_path(
        args.config.clone(),
        std::env::var_os("POSTERN_CONFIG").map(PathBuf::from),
    );
    let config = load_config(&path, from, privileged())?;
    let connect = |timeout| {
        Client::for_config(&config, timeout).map_err(|e| (client_exit(&e), e.to_string()))
    };
    let ask = |c: &mut Client, req: &Request| -> Result<Response, Fail> {
        let r = c
            .request(req)
            .map_err(|e| (client_exit(&e), e.to_string()))?;
        if r.ok {
            Ok(r)
        } else {
            Err((exit_for(r.kind), r.error_text().to_owned()))
        }
    };
    match args.mode {
        Mode::NewAliases => Ok(()),
        Mode::ListQueue => {
            let mut c = connect(Duration::from_secs(120))?;
            let r = ask(
                &mut c,
                &Request::List {
                    sender: None,
                    recipient: None,
                    domain: None,
                },
            )?;
            let list = r.messages.unwrap_or_default();
            if list.is_empty() {
                println!("Mail queue is empty");
            } else {
                print!(
                    "{}",
                    control::render_table(&control::LIST_HEADER, &control::list_rows(&list))
                );
                println!("{}", control::list_summary(&list));
            }
            Ok(())
        }
        Mode::Flush => {
            let mut c = connect(Duration::from_secs(30))?;
            let r = ask(&mut c, &Request::Flush { id: None })?;
            if args.verbose {
                eprintln!("{}", r.text.unwrap_or_default());
            }
            Ok(())
        }
        Mode::Deliver => deliver(&args, &config, connect),
        Mode::Smtp => smtp_session(&args, &config),
    }
}

/// `-bs`: an SMTP session on stdin/stdout; every accepted message goes to smtpd as a local
/// submission, its header completed as without `-bs` (From, Date, Message-ID).
fn smtp_session(args: &Args, config: &postern_config::Config) -> Result<(), Fail> {
    let host = &config.hostname;
    let session = Arc::new(smtp::session_config(config));
    let hand_over = |s: &smtp::Submission<'_>| -> smtp::Handed {
        let date = mail_builder::headers::date::Date::now().to_rfc822();
        let message_id = new_message_id(host);
        let (message, _) = prepare(
            s.message,
            &Prepare {
                extract: false,
                sender: s.sender,
                full_name: args.full_name.as_deref(),
                hostname: host,
                date: &date,
                message_id: &message_id,
            },
        );
        let unreachable = |e: ClientError| {
            let kind = matches!(e, ClientError::Denied(_)).then_some(ErrorKind::Denied);
            (kind, e.to_string())
        };
        let mut c = Client::for_config(config, Duration::from_secs(120)).map_err(unreachable)?;
        let r = c
            .submit(Some(s.sender.unwrap_or("<>")), &s.recipients, &message)
            .map_err(unreachable)?;
        if r.ok {
            Ok(r.id.unwrap_or_default())
        } else {
            Err((r.kind, r.error_text().to_owned()))
        }
    };
    smtp::serve(session, io::stdin().lock(), io::stdout().lock(), hand_over)
        .map_err(|e| (exit::IOERR, format!("SMTP on stdin/stdout: {e}")))
}

/// Whether we run with rights the caller does not have: installed setgid `postdrop` (or
/// setuid) and called by someone other than root. Then the caller may not make us read any
/// file they like (it is read with the group's rights, and a parse error shows a line of
/// it), nor name the socket we connect to: Postfix's `postdrop` likewise ignores a user's
/// configuration directory unless root allowed it.
fn privileged() -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    let uid = getuid();
    !uid.is_root() && (getegid() != getgid() || geteuid() != uid)
}

/// The config file to read: `-C`/`--config`, else `POSTERN_CONFIG`, else the compiled-in
/// default; with the option or variable that chose it (`None`: the default).
fn config_path(arg: Option<PathBuf>, env: Option<PathBuf>) -> (PathBuf, Option<&'static str>) {
    let default = PathBuf::from(postern_config::DEFAULT_CONFIG_PATH);
    match (arg, env) {
        (Some(p), _) if p == default => (p, None),
        (Some(p), _) => (p, Some("-C")),
        (None, Some(p)) if p == default => (p, None),
        (None, Some(p)) => (p, Some("POSTERN_CONFIG")),
        (None, None) => (default, None),
    }
}

/// Whether a config file the caller chose may be read with our group's rights: only one
/// that root installed for it, as INSTALL.md lays the config out (owner root, our
/// effective group, writable by root alone). A user cannot make such a file, and the only
/// files of that group are Postern's config and socket.
fn admin_installed(is_file: bool, owner: u32, group: u32, mode: u32, egid: u32) -> bool {
    is_file && owner == 0 && group == egid && mode & 0o022 == 0
}

/// Loads the config at `path`; when `privileged` and the caller chose the file (`from`),
/// only if [`admin_installed`] (checked on the opened file, then read from it). Refused:
/// EX_USAGE, a permanent mistake not worth retrying.
fn load_config(
    path: &std::path::Path,
    from: Option<&'static str>,
    privileged: bool,
) -> Result<postern_config::Config, Fail> {
    let (Some(from), true) = (from, privileged) else {
        return postern_config::Config::load(path).map_err(|e| (exit::CONFIG, e.to_string()));
    };
    use std::os::unix::fs::MetadataExt;
    let refused = || {
        (
            exit::USAGE,
            format!(
                "{from} {}: refused: sendmail runs set-group-id for a user who is not root, and \
                 reads a config other than {} only when it belongs to root and group {} and \
                 only root may write it",
                path.display(),
                postern_config::DEFAULT_CONFIG_PATH,
                nix::unistd::getegid()
            ),
        )
    };
    let mut file = std::fs::File::open(path).map_err(|_| refused())?;
    let meta = file.metadata().map_err(|_| refused())?;
    let egid = nix::unistd::getegid().as_raw();
    if !admin_installed(meta.is_file(), meta.uid(), meta.gid(), meta.mode(), egid) {
        return Err(refused());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| (exit::CONFIG, format!("cannot read {}: {e}", path.display())))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    // Not the parser's message: it quotes the file, which the caller may not read.
    postern_config::Config::parse(&text, &base).map_err(|_| {
        (
            exit::CONFIG,
            format!("{from} {}: not a valid Postern config", path.display()),
        )
    })
}

fn deliver(
    args: &Args,
    config: &postern_config::Config,
    connect: impl Fn(Duration) -> Result<Client, Fail>,
) -> Result<(), Fail> {
    let host = &config.hostname;
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let sender: Option<String> = match args.sender.as_deref().map(str::trim) {
        Some("" | "<>") => None,
        Some(s) => Some(
            control::local_address(s, host, true)
                .map_err(|e| (exit::DATAERR, format!("bad sender {e}")))?
                .unwrap_or_default(),
        ),
        None => {
            let name = user.as_ref().map_or_else(
                || format!("uid{}", nix::unistd::getuid()),
                |u| u.name.clone(),
            );
            Some(format!("{name}@{host}"))
        }
    };
    // -F, else the account's full name (GECOS) when sending as ourselves.
    let gecos = user
        .as_ref()
        .filter(|_| args.sender.is_none())
        .and_then(|u| {
            let g = u.gecos.to_string_lossy().into_owned();
            let first = g.split(',').next().unwrap_or("").trim().to_owned();
            (!first.is_empty()).then_some(first)
        });
    let full_name = args.full_name.clone().or(gecos);
    let max = config.smtpd.max_message_size;
    let input = read_message(io::stdin().lock(), args.ignore_dots, max).map_err(|e| match e {
        ReadError::TooLarge(m) => (
            exit::DATAERR,
            format!("message larger than the limit of {m} bytes"),
        ),
        ReadError::Io(e) => (exit::IOERR, format!("reading the message: {e}")),
    })?;
    let date = mail_builder::headers::date::Date::now().to_rfc822();
    let message_id = new_message_id(host);
    let (message, extracted) = prepare(
        &input,
        &Prepare {
            extract: args.extract,
            sender: sender.as_deref(),
            full_name: full_name.as_deref(),
            hostname: host,
            date: &date,
            message_id: &message_id,
        },
    );
    let mut rcpts = args.recipients.clone();
    rcpts.extend(extracted);
    if rcpts.is_empty() {
        return Err((
            exit::USAGE,
            if args.extract {
                "no recipients in the command line or in To/Cc/Bcc".into()
            } else {
                "no recipients given (name them, or use -t)".into()
            },
        ));
    }
    let mut c = connect(Duration::from_secs(120))?;
    let r = c
        .submit(Some(sender.as_deref().unwrap_or("<>")), &rcpts, &message)
        .map_err(|e| (client_exit(&e), e.to_string()))?;
    if !r.ok {
        return Err((exit_for(r.kind), r.error_text().to_owned()));
    }
    if args.verbose {
        eprintln!("{}", r.text.unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn config_path_and_who_chose_it() {
        let def = PathBuf::from(postern_config::DEFAULT_CONFIG_PATH);
        let mine = || Some(PathBuf::from("/home/eve/evil.toml"));
        assert_eq!(config_path(None, None), (def.clone(), None));
        assert_eq!(config_path(mine(), None), (mine().unwrap(), Some("-C")));
        // -C wins over the environment.
        assert_eq!(
            config_path(Some("/a.toml".into()), mine()),
            (PathBuf::from("/a.toml"), Some("-C"))
        );
        assert_eq!(
            config_path(None, mine()),
            (mine().unwrap(), Some("POSTERN_CONFIG"))
        );
        // Naming the default is not a choice; a path that only resolves to it is.
        assert_eq!(config_path(Some(def.clone()), mine()), (def.clone(), None));
        assert_eq!(config_path(None, Some(def.clone())), (def.clone(), None));
        assert_eq!(
            config_path(Some("/etc/postern/../postern/postern.toml".into()), None).1,
            Some("-C")
        );
    }

    #[test]
    fn only_a_config_root_installed_for_our_group() {
        const POSTDROP: u32 = 120;
        // INSTALL.md's layout: root:postdrop 0640.
        assert!(admin_installed(true, 0, POSTDROP, 0o100640, POSTDROP));
        assert!(admin_installed(true, 0, POSTDROP, 0o100600, POSTDROP));
        // The caller's own file, another group's, a writable one, a directory.
        assert!(!admin_installed(true, 1000, POSTDROP, 0o100640, POSTDROP));
        assert!(!admin_installed(true, 0, 8, 0o100640, POSTDROP));
        assert!(!admin_installed(true, 0, POSTDROP, 0o100660, POSTDROP));
        assert!(!admin_installed(true, 0, POSTDROP, 0o100646, POSTDROP));
        assert!(!admin_installed(false, 0, POSTDROP, 0o040750, POSTDROP));
    }

    #[test]
    fn privileged_refuses_a_file_root_did_not_install() {
        let dir = std::env::temp_dir().join(format!("sendmail-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "secret = 1\nnot toml\n").unwrap();
        // Our own file is not root's file for our effective group (as root: give it to
        // another group, as root's own files in its own group would pass).
        if nix::unistd::geteuid().is_root() {
            let other = nix::unistd::Gid::from_raw(65534);
            nix::unistd::chown(&p, None, Some(other)).unwrap();
        }
        let (code, msg) = load_config(&p, Some("-C"), true).unwrap_err();
        assert_eq!(code, exit::USAGE);
        assert!(msg.contains("refused"), "{msg}");
        assert!(!msg.contains("not toml"), "{msg}");
        // A missing file is refused the same way (no probing what exists).
        let (code, _) = load_config(&dir.join("nope"), Some("-C"), true).unwrap_err();
        assert_eq!(code, exit::USAGE);
        // Not privileged: read as usual (a parse error).
        let (code, _) = load_config(&p, Some("-C"), false).unwrap_err();
        assert_eq!(code, exit::CONFIG);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arguments() {
        let a = parse_args(&argv(
            "/usr/sbin/sendmail -t -oi -f bob@x.org -F Bob -odi -oem a@b.org,c@d.org e",
        ))
        .unwrap();
        assert_eq!(
            a,
            Args {
                mode: Mode::Deliver,
                extract: true,
                ignore_dots: true,
                sender: Some("bob@x.org".into()),
                full_name: Some("Bob".into()),
                config: None,
                verbose: false,
                recipients: vec!["a@b.org".into(), "c@d.org".into(), "e".into()],
            }
        );
        let a = parse_args(&argv("sendmail -ti -fme -FMe -C/etc/p.toml -- -x")).unwrap();
        assert!(a.extract && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("me"));
        assert_eq!(a.full_name.as_deref(), Some("Me"));
        assert_eq!(a.config, Some(PathBuf::from("/etc/p.toml")));
        assert_eq!(a.recipients, ["-x"]);
        assert_eq!(
            parse_args(&argv("sendmail -bp")).unwrap().mode,
            Mode::ListQueue
        );
        assert_eq!(
            parse_args(&argv("/usr/bin/mailq")).unwrap().mode,
            Mode::ListQueue
        );
        assert_eq!(
            parse_args(&argv("newaliases")).unwrap().mode,
            Mode::NewAliases
        );
        assert_eq!(parse_args(&argv("sendmail -q")).unwrap().mode, Mode::Flush);
        let a = parse_args(&argv("sendmail --config c.toml -N never -R hdrs -V x -v u")).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("c.toml")));
        assert!(a.verbose);
        assert_eq!(a.recipients, ["u"]);
        assert_eq!(
            parse_args(&argv("sendmail --config=c2 u")).unwrap().config,
            Some(PathBuf::from("c2"))
        );
        assert!(
            !parse_args(&argv("sendmail -i -oifalse u"))
                .unwrap()
                .ignore_dots
        );
        assert_eq!(parse_args(&argv("sendmail -bs")).unwrap().mode, Mode::Smtp);
        assert!(parse_args(&argv("sendmail -f")).is_err());
        assert!(parse_args(&argv("sendmail --bogus")).is_err());
    }

    #[test]
    fn dot_ends_input_unless_ignored() {
        let input: &[u8] = b"Subject: x\n\nline\n.\nafter\n";
        assert_eq!(
            read_message(input, false, 1000).unwrap(),
            b"Subject: x\n\nline\n"
        );
        assert_eq!(read_message(input, true, 1000).unwrap(), input);
        assert_eq!(
            read_message(&b"a\r\n.\r\nb"[..], false, 100).unwrap(),
            b"a\r\n"
        );
        assert_eq!(
            read_message(&b"a\n..\n"[..], false, 100).unwrap(),
            b"a\n..\n"
        );
        assert!(matches!(
            read_message(&[b'x'; 50][..], true, 10),
            Err(ReadError::TooLarge(10))
        ));
        assert_eq!(read_message(&[b'x'; 10][..], true, 10).unwrap().len(), 10);
    }

    fn prep<'a>(extract: bool, full_name: Option<&'a str>) -> Prepare<'a> {
        Prepare {
            extract,
            sender: Some("alice@h.example"),
            full_name,
            hostname: "h.example",
            date: "Mon, 1 Jan 2024 00:00:00 +0000",
            message_id: "<id@h.example>",
        }
    }

    #[test]
    fn header_completion() {
        let msg = b"To: Bob <bob@x.org>, carol@y.org\nCc: undisclosed-recipients:;\nBcc: dave@z.org,\n  eve@z.org\nSubject: hi\n\nbody\n";
        let (out, rcpts) = prepare(msg, &prep(true, Some("Alice A.")));
        assert_eq!(
            rcpts,
            ["bob@x.org", "carol@y.org", "dave@z.org", "eve@z.org"]
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "To: Bob <bob@x.org>, carol@y.org\r\nCc: undisclosed-recipients:;\r\nSubject: hi\r\n\
             From: \"Alice A.\" <alice@h.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Message-ID: <id@h.example>\r\n\r\nbody\r\n"
        );
        // Without -t nothing is extracted and Bcc stays; present fields are not added.
        let msg = b"From: x@y\r\nDate: d\r\nMessage-ID: <m@y>\r\nBcc: q@r\r\n\r\nb\r\n";
        let (out, rcpts) = prepare(msg, &prep(false, None));
        assert!(rcpts.is_empty());
        assert_eq!(out, msg);
        // No header at all: the input is body.
        let (out, _) = prepare(b"just text\n", &prep(false, None));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: alice@h.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Message-ID: <id@h.example>\r\n\r\njust text\r\n"
        );
        let (out, _) = prepare(b"Subject: s\n", &prep(false, Some("Zoë")));
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("From: =?utf-8?B?Wm/Dqw==?= <alice@h.example>\r\n")
        );
        assert_eq!(display_name("Plain Name"), "Plain Name");
        assert_eq!(display_name("a \"b\""), "\"a \\\"b\\\"\"");
    }

    #[test]
    fn exits_and_tables() {
        assert_eq!(exit_for(Some(ErrorKind::BadAddress)), exit::NOUSER);
        assert_eq!(exit_for(Some(ErrorKind::TooLarge)), exit::DATAERR);
        assert_eq!(exit_for(Some(ErrorKind::TempFail)), exit::TEMPFAIL);
        assert_eq!(
            control::render_table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]),
            "A    BB\nxxx  y\n"
        );
        assert!(new_message_id("h").ends_with("@h>"));
    }
}
