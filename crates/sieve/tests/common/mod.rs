//! Helpers shared by the integration tests: a message view parsed from text, and
//! shorthands to compile and run scripts.
#![allow(dead_code)]

use postern_sieve::{
    Action, CompileError, Context, Envelope, Message, Outcome, RuntimeError, compile, execute,
};

/// A message header parsed from `Name: value` lines (continuations unfolded).
pub(crate) struct Msg {
    headers: Vec<(String, String)>,
    size: u64,
}

impl Msg {
    pub(crate) fn new(raw: &str) -> Self {
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in raw.lines() {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = headers.last_mut() {
                    v.push_str(line);
                }
            } else if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Self {
            headers,
            size: raw.len() as u64,
        }
    }

    pub(crate) fn with_size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }
}

impl Message for Msg {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn size(&self) -> u64 {
        self.size
    }
}

/// RFC 5228 section 1.2, first example message.
pub(crate) const MSG_A: &str = "Date: Tue, 1 Apr 1997 09:06:31 -0800 (PST)\r
From: coyote@desert.example.org\r
To: roadrunner@acme.example.com\r
Subject: I have a present for you\r
\r
Look, I'm sorry about the whole anvil thing.\r
";

/// RFC 5228 section 1.2, second example message (shortened).
pub(crate) const MSG_B: &str = "X-Caffeine: C8H10N4O2\r
From: Ned Freed <ned@mrochek.example.com>\r
To: Bob <bob@example.com>, \"Jane, Doe\" <jane+lists@Example.COM>\r
Cc: team: carol@example.net, dave@example.net;\r
Subject: Re: Fwd: Coffee\r
Received: from a by b\r
Received: from c by d\r
\r
body\r
";

pub(crate) fn env(from: Option<&str>, to: &str) -> Envelope {
    Envelope {
        from: from.map(str::to_owned),
        to: to.to_owned(),
    }
}

pub(crate) enum Failure {
    Compile(CompileError),
    Runtime(RuntimeError),
}

/// Compiles and runs `script` with full control over the context.
pub(crate) fn run_full(
    script: &str,
    msg: &Msg,
    envelope: &Envelope,
    mailboxes: &[&str],
) -> Result<Outcome, Failure> {
    let s = compile(script).map_err(Failure::Compile)?;
    let exists = |m: &str| mailboxes.contains(&m);
    let ctx = Context {
        message: msg,
        envelope,
        mailbox_exists: &exists,
    };
    execute(&s, &ctx).map_err(Failure::Runtime)
}

/// Runs `script` on `raw`, from `sender@example.org` to `me@example.com`.
pub(crate) fn outcome(script: &str, raw: &str) -> Outcome {
    match run_full(
        script,
        &Msg::new(raw),
        &env(Some("sender@example.org"), "me@example.com"),
        &[],
    ) {
        Ok(o) => o,
        Err(Failure::Compile(e)) => panic!("compile error: {e}\n{script}"),
        Err(Failure::Runtime(e)) => panic!("runtime error: {e}\n{script}"),
    }
}

/// The actions of `script` on `raw`.
pub(crate) fn run(script: &str, raw: &str) -> Vec<Action> {
    outcome(script, raw).actions
}

/// The runtime error `script` must produce on `raw`.
pub(crate) fn runtime_err(script: &str, raw: &str) -> RuntimeError {
    match run_full(
        script,
        &Msg::new(raw),
        &env(Some("sender@example.org"), "me@example.com"),
        &[],
    ) {
        Err(Failure::Runtime(e)) => e,
        Err(Failure::Compile(e)) => panic!("unexpected compile error: {e}\n{script}"),
        Ok(o) => panic!("expected a runtime error, got {:?}\n{script}", o.actions),
    }
}

/// The compile error `script` must produce.
pub(crate) fn compile_err(script: &str) -> CompileError {
    match compile(script) {
        Err(e) => e,
        Ok(_) => panic!("expected a compile error:\n{script}"),
    }
}

pub(crate) fn keep() -> Action {
    Action::Keep { flags: vec![] }
}

pub(crate) fn keep_flags(flags: &[&str]) -> Action {
    Action::Keep {
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
    }
}

pub(crate) fn fileinto(mailbox: &str) -> Action {
    Action::FileInto {
        mailbox: mailbox.to_owned(),
        create: false,
        flags: vec![],
        copy: false,
    }
}

pub(crate) fn redirect(address: &str) -> Action {
    Action::Redirect {
        address: address.to_owned(),
        copy: false,
    }
}
