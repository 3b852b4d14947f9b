//! The two trees: the generic syntax tree the parser builds (RFC 5228 section 8.2: every
//! command is an identifier, arguments, tests and an optional block), and the checked
//! program the validator makes of it and the interpreter runs.

use crate::date::{DateZone, FieldIndex};
use crate::matching::MatchSpec;
use crate::variables::{Modifier, Str};

/// A place in the source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

impl Default for Pos {
    fn default() -> Self {
        Self { line: 1, col: 1 }
    }
}

/// One argument as written.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `:name`, lower-cased.
    Tag(String, Pos),
    /// A number, quantifier applied.
    Number(u64, Pos),
    /// A string (`bracketed` false, one element) or a string list `[...]`.
    Strings {
        list: Vec<String>,
        bracketed: bool,
        pos: Pos,
    },
}

impl Arg {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Self::Tag(_, p) | Self::Number(_, p) | Self::Strings { pos: p, .. } => *p,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Tag(t, _) => format!("tag ':{t}'"),
            Self::Number(n, _) => format!("number {n}"),
            Self::Strings {
                bracketed: false, ..
            } => "a string".to_owned(),
            Self::Strings { .. } => "a string list".to_owned(),
        }
    }
}

/// A test as written: name, arguments and nested tests.
#[derive(Debug, Clone)]
pub(crate) struct RawTest {
    pub(crate) name: String,
    pub(crate) pos: Pos,
    pub(crate) args: Vec<Arg>,
    pub(crate) tests: Vec<Self>,
}

/// A command as written: name, arguments, tests and an optional block.
#[derive(Debug, Clone)]
pub(crate) struct RawCommand {
    pub(crate) name: String,
    pub(crate) pos: Pos,
    pub(crate) args: Vec<Arg>,
    pub(crate) tests: Vec<RawTest>,
    pub(crate) block: Option<Vec<Self>>,
}

/// A checked command and the line it starts on (for runtime errors).
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub(crate) line: usize,
    pub(crate) kind: CmdKind,
}

/// The checked commands.
#[derive(Debug, Clone)]
pub(crate) enum CmdKind {
    /// `if` / `elsif` chains and the optional `else`.
    If {
        branches: Vec<(Test, Vec<Cmd>)>,
        otherwise: Vec<Cmd>,
    },
    Stop,
    Keep {
        flags: Option<Vec<Str>>,
    },
    Discard,
    Redirect {
        address: Str,
        copy: bool,
    },
    FileInto {
        mailbox: Str,
        create: bool,
        copy: bool,
        flags: Option<Vec<Str>>,
    },
    /// `set`; modifiers sorted by descending precedence; `name` lower-cased.
    Set {
        name: String,
        modifiers: Vec<Modifier>,
        value: Str,
    },
    /// `setflag` / `addflag` / `removeflag`; `variable` None is the internal variable.
    Flag {
        op: FlagOp,
        variable: Option<String>,
        flags: Vec<Str>,
    },
    Reject {
        reason: Str,
        extended: bool,
    },
    Vacation(Box<VacationCmd>),
    /// `include` (RFC 6609): a script name (checked, no variables).
    Include {
        name: String,
        global: bool,
        once: bool,
        optional: bool,
    },
    /// `return` (RFC 6609): end the current script.
    Return,
    /// `global` (RFC 6609): variable names shared with included scripts, lower-cased.
    Global(Vec<String>),
    /// `addheader` (RFC 5293 §4).
    AddHeader {
        name: Str,
        value: Str,
        last: bool,
    },
    /// `deleteheader` (RFC 5293 §5); `keys` None deletes every (or the indexed) field.
    DeleteHeader {
        spec: MatchSpec,
        index: Option<FieldIndex>,
        name: Str,
        keys: Option<Vec<Str>>,
    },
}

/// Which flag command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagOp {
    Set,
    Add,
    Remove,
}

/// The arguments of `vacation`.
#[derive(Debug, Clone)]
pub(crate) struct VacationCmd {
    pub(crate) days: Option<u64>,
    pub(crate) subject: Option<Str>,
    pub(crate) from: Option<Str>,
    pub(crate) addresses: Vec<Str>,
    pub(crate) mime: bool,
    pub(crate) handle: Option<Str>,
    pub(crate) reason: Str,
}

/// Which part of an address a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressPart {
    All,
    LocalPart,
    Domain,
    /// RFC 5233: the local part up to the first `+`.
    User,
    /// RFC 5233: the local part after the first `+` (absent when there is none).
    Detail,
}

/// The checked tests.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    True,
    False,
    Not(Box<Self>),
    AllOf(Vec<Self>),
    AnyOf(Vec<Self>),
    Address {
        spec: MatchSpec,
        part: AddressPart,
        headers: Vec<Str>,
        keys: Vec<Str>,
        /// `:index` (RFC 5260 §6).
        index: Option<FieldIndex>,
    },
    Envelope {
        spec: MatchSpec,
        part: AddressPart,
        parts: Vec<Str>,
        keys: Vec<Str>,
    },
    Header {
        spec: MatchSpec,
        headers: Vec<Str>,
        keys: Vec<Str>,
        /// `:index` (RFC 5260 §6).
        index: Option<FieldIndex>,
    },
    /// `body` (RFC 5173); `:content` types in `content`.
    Body {
        spec: MatchSpec,
        raw: bool,
        content: Option<Vec<Str>>,
        keys: Vec<Str>,
    },
    /// `date` (with a header) and `currentdate` (RFC 5260).
    Date {
        spec: MatchSpec,
        zone: DateZone,
        /// The header field; `None` for `currentdate`.
        header: Option<Str>,
        index: Option<FieldIndex>,
        part: Str,
        keys: Vec<Str>,
    },
    Exists(Vec<Str>),
    Size {
        over: bool,
        limit: u64,
    },
    String {
        spec: MatchSpec,
        sources: Vec<Str>,
        keys: Vec<Str>,
    },
    /// `hasflag`; `variables` None is the internal variable.
    HasFlag {
        spec: MatchSpec,
        variables: Option<Vec<String>>,
        keys: Vec<Str>,
    },
    MailboxExists(Vec<Str>),
}
