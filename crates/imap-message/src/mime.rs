//! MIME structure of a message as it is on the wire: header fields, the header/body split,
//! Content-* fields and the part tree with byte offsets into the original message.
//!
//! Everything here works on byte offsets of the original message so that sections and sizes
//! are exact. Nothing panics on malformed input: offsets are always clamped to the data.

/// Deepest nesting of multipart / message parts that is followed; deeper parts are leaves.
pub(crate) const MAX_DEPTH: usize = 50;
/// Most parts parsed in one message; later parts are treated as epilogue.
pub(crate) const MAX_PARTS: usize = 10_000;
/// Most Content-Type/Content-Disposition parameters and Content-Language tags kept in one
/// message (all parts together); past it a part keeps only `boundary` and `charset`. Each
/// becomes several allocations in BODYSTRUCTURE and the summary: without a total, 5000 parts
/// of 1000 `;pN*0=v` parameters (a 42 MB message) took 2.7 GB to describe.
pub(crate) const MAX_PARAMS: usize = 10_000;

pub(crate) const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
pub(crate) const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

/// Length of the header block at the start of `data`, including the blank line that ends it
/// (so `data[len..]` is the body). Without a blank line the whole data is header.
pub(crate) fn header_len(data: &[u8]) -> usize {
    if data.starts_with(b"\r\n") {
        return 2;
    }
    if data.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(p) = data
        .get(i..)
        .and_then(|d| d.iter().position(|&b| b == b'\n'))
    {
        let lf = i + p;
        match (data.get(lf + 1), data.get(lf + 2)) {
            (Some(b'\n'), _) => return lf + 2,
            (Some(b'\r'), Some(b'\n')) => return lf + 3,
            _ => {}
        }
        i = lf + 1;
    }
    data.len()
}

/// One header field: `name` (without the colon, trimmed), `value` (everything after the colon,
/// folding kept, final line break removed) and `raw` (all its lines with their line breaks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) raw: &'a [u8],
}

impl Field<'_> {
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Iterates the fields of a header block; stops at the blank line. Lines without a colon are
/// skipped.
pub(crate) struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

pub(crate) fn fields(header: &[u8]) -> Fields<'_> {
    Fields {
        data: header,
        pos: 0,
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            let data = self.data;
            let start = self.pos;
            let rest = data.get(start..)?;
            if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
                // the blank line (or the end)
                self.pos = data.len();
                return None;
            }
            // end of this field: the first line break not followed by SP/HTAB
            let mut end = data.len();
            let mut i = start;
            while let Some(p) = data
                .get(i..)
                .and_then(|d| d.iter().position(|&b| b == b'\n'))
            {
                let lf = i + p;
                match data.get(lf + 1) {
                    Some(b' ' | b'\t') => i = lf + 1,
                    _ => {
                        end = lf + 1;
                        break;
                    }
                }
            }
            self.pos = end;
            let raw = data.get(start..end)?;
            let first_line_len = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
            let Some(colon) = raw
                .get(..first_line_len)
                .and_then(|l| l.iter().position(|&b| b == b':'))
            else {
                continue;
            };
            let name = trim_wsp(raw.get(..colon).unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            let mut value = raw.get(colon + 1..).unwrap_or_default();
            if let Some(v) = value.strip_suffix(b"\n") {
                value = v.strip_suffix(b"\r").unwrap_or(v);
            }
            return Some(Field { name, value, raw });
        }
    }
}

pub(crate) fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_wsp(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_wsp(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Unfolds a header value: removes CR and LF, trims leading and trailing white space.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim_wsp(&v).to_vec()
}

/// The first field named `name` in a header block.
pub(crate) fn first_field<'a>(header: &'a [u8], name: &str) -> Option<Field<'a>> {
    fields(header).find(|f| f.is(name))
}

// ------------------------------------------------------------------------------------------
// RFC 822 / RFC 2045 lexical helpers for structured fields (Content-Type & co.)

fn is_tspecial(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    )
}

fn is_token_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && !is_tspecial(b)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips white space and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            if is_wsp(b) {
                self.i += 1;
            } else if b == b'(' {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    self.i += 1;
                    match c {
                        b'\\' => self.i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(is_token_char) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }

    /// A quoted string starting at the current `"`; returns its unescaped content.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1; // opening quote
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        self.i += 1;
                        out.push(n);
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(c),
            }
        }
        out
    }

    /// A lenient parameter value: quoted string, or anything up to `;`, white space or `(`.
    fn value(&mut self) -> Vec<u8> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b != b';' && b != b'(' && b != b'"' && !is_wsp(b))
        {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default().to_vec()
    }

    fn skip_past(&mut self, stop: u8) {
        while let Some(b) = self.peek() {
            if b == b'"' {
                let _ = self.quoted();
                continue;
            }
            self.i += 1;
            if b == stop {
                break;
            }
        }
    }
}

pub(crate) type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// Parses `;`-separated `name=value` parameters, merging RFC 2231 continuations
/// (`name*0=…; name*1=…` → `name`, `name*0*=…` → `name*` with the encoded value kept).
fn parse_params(lx: &mut Lexer<'_>) -> Params {
    let mut raw: Params = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b';') => {
                lx.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = lx.token().to_vec();
        if name.is_empty() {
            lx.skip_past(b';');
            continue;
        }
        lx.skip_cfws();
        if lx.peek() != Some(b'=') {
            lx.skip_past(b';');
            continue;
        }
        lx.i += 1;
        lx.skip_cfws();
        let value = lx.value();
        raw.push((name, value));
        if raw.len() > 1000 {
            break;
        }
    }
    merge_rfc2231(raw)
}

fn merge_rfc2231(raw: Params) -> Params {
    // (base name, section number, extended, value)
    struct Cont {
        base: Vec<u8>,
        parts: Vec<(u32, bool, Vec<u8>)>,
    }
    type Entry = Result<(Vec<u8>, Vec<u8>), Cont>;
    let mut out: Vec<Entry> = Vec::new();
    // Continued parameters by lower-cased base name → index in `out` (a linear search here
    // made 1000 distinct `pN*0=` parameters cost 1000² per Content-Type).
    let mut conts: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for (name, value) in raw {
        let (base, rest) = match name.iter().position(|&b| b == b'*') {
            Some(p) => (
                name.get(..p).unwrap_or_default(),
                name.get(p + 1..).unwrap_or_default(),
            ),
            None => (name.as_slice(), &b""[..]),
        };
        let (num, extended) = match rest.strip_suffix(b"*") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let section = if num.is_empty() || !num.iter().all(u8::is_ascii_digit) || num.len() > 6 {
            None
        } else {
            std::str::from_utf8(num)
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
        };
        match section {
            Some(n) => {
                let key = base.to_ascii_lowercase();
                match conts.get(&key).and_then(|&i| out.get_mut(i)) {
                    Some(Err(c)) => c.parts.push((n, extended, value)),
                    _ => {
                        conts.insert(key, out.len());
                        out.push(Err(Cont {
                            base: base.to_vec(),
                            parts: vec![(n, extended, value)],
                        }));
                    }
                }
            }
            None => out.push(Ok((name, value))),
        }
    }
    out.into_iter()
        .map(|e| match e {
            Ok(p) => p,
            Err(mut c) => {
                c.parts.sort_by_key(|p| p.0);
                let extended = c.parts.first().is_some_and(|p| p.1);
                let mut name = c.base;
                if extended {
                    name.push(b'*');
                }
                let value = c.parts.into_iter().flat_map(|p| p.2).collect();
                (name, value)
            }
        })
        .collect()
}

pub(crate) fn param<'a>(params: &'a Params, name: &str) -> Option<&'a [u8]> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

/// `type/subtype; params` → None when syntactically invalid.
pub(crate) fn parse_content_type(value: &[u8]) -> Option<(String, String, Params)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token();
    if t.is_empty() {
        return None;
    }
    lx.skip_cfws();
    if lx.peek() != Some(b'/') {
        return None;
    }
    lx.i += 1;
    lx.skip_cfws();
    let st = lx.token();
    if st.is_empty() {
        return None;
    }
    let t = String::from_utf8_lossy(t).into_owned();
    let st = String::from_utf8_lossy(st).into_owned();
    Some((t, st, parse_params(&mut lx)))
}

/// `disposition-type; params` → None when there is no type.
pub(crate) fn parse_disposition(value: &[u8]) -> Option<(Vec<u8>, Params)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token().to_vec();
    if t.is_empty() {
        return None;
    }
    Some((t, parse_params(&mut lx)))
}

/// A single token value such as Content-Transfer-Encoding.
pub(crate) fn parse_token_value(value: &[u8]) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token().to_vec();
    lx.skip_cfws();
    (!t.is_empty() && lx.peek().is_none()).then_some(t)
}

/// Comma separated language tags.
pub(crate) fn parse_language(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut lx = Lexer::new(value);
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b',') => {
                lx.i += 1;
                continue;
            }
            Some(_) => {}
        }
        let start = lx.i;
        while lx
            .peek()
            .is_some_and(|b| b != b',' && b != b'(' && !is_wsp(b))
        {
            lx.i += 1;
        }
        if lx.i == start {
            lx.i += 1;
            continue;
        }
        if let Some(t) = value.get(start..lx.i) {
            out.push(t.to_vec());
        }
        if out.len() > 100 {
            break;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The part tree

/// The Content-* information of one part, defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Mime {
    pub(crate) mtype: String,
    pub(crate) subtype: String,
    pub(crate) params: Params,
    /// The Content-Transfer-Encoding token (None when absent or not a valid token).
    pub(crate) cte: Option<Vec<u8>>,
    /// Whether a Content-Transfer-Encoding field was present with an invalid value.
    pub(crate) cte_invalid: bool,
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) description: Option<Vec<u8>>,
    pub(crate) md5: Option<Vec<u8>>,
    pub(crate) disposition: Option<(Vec<u8>, Params)>,
    pub(crate) language: Vec<Vec<u8>>,
    pub(crate) location: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultType {
    Text,
    Message,
}

impl Mime {
    fn default_of(default: DefaultType) -> Self {
        let (mtype, subtype, params) = match default {
            DefaultType::Text => (
                "text",
                "plain",
                vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
            ),
            DefaultType::Message => ("message", "rfc822", Vec::new()),
        };
        Self {
            mtype: mtype.into(),
            subtype: subtype.into(),
            params,
            cte: None,
            cte_invalid: false,
            id: None,
            description: None,
            md5: None,
            disposition: None,
            language: Vec::new(),
            location: None,
        }
    }

    pub(crate) fn from_header(header: &[u8], default: DefaultType) -> Self {
        let mut m = Self::default_of(default);
        let mut seen_ct = false;
        for f in fields(header) {
            if !f
                .name
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"content-"))
            {
                continue;
            }
            let nonempty = |v: Vec<u8>| (!v.is_empty()).then_some(v);
            if f.is("content-type") {
                if seen_ct {
                    continue;
                }
                seen_ct = true;
                match parse_content_type(f.value) {
                    Some((t, st, params)) => {
                        m.mtype = t;
                        m.subtype = st;
                        m.params = params;
                    }
                    None => {
                        // RFC 2045 §5.2: an invalid Content-Type means text/plain
                        let d = Self::default_of(DefaultType::Text);
                        m.mtype = d.mtype;
                        m.subtype = d.subtype;
                        m.params = d.params;
                    }
                }
            } else if f.is("content-transfer-encoding") {
                if m.cte.is_none() && !m.cte_invalid {
                    m.cte = parse_token_value(f.value);
                    m.cte_invalid = m.cte.is_none() && !trim_wsp(f.value).is_empty();
                }
            } else if f.is("content-id") {
                m.id = m.id.take().or_else(|| nonempty(unfold(f.value)));
            } else if f.is("content-description") {
                m.description = m.description.take().or_else(|| nonempty(unfold(f.value)));
            } else if f.is("content-md5") {
                m.md5 = m.md5.take().or_else(|| nonempty(unfold(f.value)));
            } else if f.is("content-disposition") {
                if m.disposition.is_none() {
                    m.disposition = parse_disposition(f.value);
                }
            } else if f.is("content-language") {
                if m.language.is_empty() {
                    m.language = parse_language(f.value);
                }
            } else if f.is("content-location") {
                m.location = m.location.take().or_else(|| {
                    nonempty(f.value.iter().copied().filter(|b| !is_wsp(*b)).collect())
                });
            }
        }
        m
    }

    pub(crate) fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    pub(crate) fn is_type(&self, mtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype)
    }

    pub(crate) fn charset(&self) -> Option<&[u8]> {
        param(&self.params, "charset")
    }

    /// Spends the message's parameter budget on this part (see [`MAX_PARAMS`]).
    fn limit(&mut self, left: &mut usize) {
        fn keep(params: &mut Params, left: &mut usize) {
            params.retain(|(name, _)| {
                if *left > 0 {
                    *left -= 1;
                    true
                } else {
                    name.eq_ignore_ascii_case(b"boundary") || name.eq_ignore_ascii_case(b"charset")
                }
            });
        }
        keep(&mut self.params, left);
        if let Some((_, params)) = &mut self.disposition {
            keep(params, left);
        }
        let langs = self.language.len().min(*left);
        self.language.truncate(langs);
        *left -= langs;
    }
}

/// What is left to parse of one message.
struct Budget {
    parts: usize,
    params: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Leaf,
    Multipart(Vec<Part>),
    /// message/rfc822: the encapsulated message, whose header starts at this part's body.
    Message(Box<Part>),
}

/// One MIME part: header block `[start, body)`, body `[body, end)`.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) start: usize,
    pub(crate) body: usize,
    pub(crate) end: usize,
    pub(crate) mime: Mime,
    pub(crate) kind: Kind,
}

impl Part {
    pub(crate) fn header<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        data.get(self.start..self.body).unwrap_or_default()
    }

    pub(crate) fn body<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        data.get(self.body..self.end).unwrap_or_default()
    }
}

thread_local! {
    /// Part-tree parses ([`parse_message`]) done on this thread.
    static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many times this thread has parsed a message's MIME part tree (tests count the parses a
/// command makes: one FETCH of one message parses it at most once, whatever its items).
pub fn parse_count() -> usize {
    PARSES.with(std::cell::Cell::get)
}

/// Parses the whole message into its part tree.
pub(crate) fn parse_message(data: &[u8]) -> Part {
    PARSES.with(|c| c.set(c.get() + 1));
    let mut budget = Budget {
        parts: MAX_PARTS,
        params: MAX_PARAMS,
    };
    parse_part(data, 0, data.len(), DefaultType::Text, 0, &mut budget)
}

fn parse_part(
    data: &[u8],
    start: usize,
    end: usize,
    default: DefaultType,
    depth: usize,
    budget: &mut Budget,
) -> Part {
    let end = end.min(data.len());
    let start = start.min(end);
    let slice = data.get(start..end).unwrap_or_default();
    let body = start + header_len(slice);
    let mut mime = Mime::from_header(data.get(start..body).unwrap_or_default(), default);
    mime.limit(&mut budget.params);
    let kind = if depth >= MAX_DEPTH {
        Kind::Leaf
    } else if mime.is_type("multipart") {
        let child_default = if mime.subtype.eq_ignore_ascii_case("digest") {
            DefaultType::Message
        } else {
            DefaultType::Text
        };
        let ranges = match param(&mime.params, "boundary") {
            Some(b) if !b.is_empty() => split_multipart(data, body, end, b),
            _ => Vec::new(),
        };
        let mut children = Vec::new();
        for (s, e) in ranges {
            if budget.parts == 0 {
                break;
            }
            budget.parts -= 1;
            children.push(parse_part(data, s, e, child_default, depth + 1, budget));
        }
        if children.is_empty() {
            // No usable boundary: one text/plain part holding the whole body keeps the
            // structure valid for clients and the content reachable.
            children.push(Part {
                start: body,
                body,
                end,
                mime: Mime::default_of(DefaultType::Text),
                kind: Kind::Leaf,
            });
        }
        Kind::Multipart(children)
    } else if mime.is("message", "rfc822") {
        if budget.parts == 0 {
            Kind::Leaf
        } else {
            budget.parts -= 1;
            Kind::Message(Box::new(parse_part(
                data,
                body,
                end,
                DefaultType::Text,
                depth + 1,
                budget,
            )))
        }
    } else {
        Kind::Leaf
    };
    Part {
        start,
        body,
        end,
        mime,
        kind,
    }
}

/// Ranges (header start, end) of the body parts of a multipart body `[start, end)`.
fn split_multipart(data: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut ls = start;
    while ls < end {
        let rest = data.get(ls..end).unwrap_or_default();
        let (line_end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(p) => (ls + p, ls + p + 1),
            None => (end, end),
        };
        let mut line = data.get(ls..line_end).unwrap_or_default();
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if let Some(after) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let is_close = after.starts_with(b"--");
            let is_delim = after.iter().all(|&b| b == b' ' || b == b'\t');
            if is_close || is_delim {
                if let Some(cs) = current {
                    let mut be = ls;
                    if be > cs && data.get(be - 1) == Some(&b'\n') {
                        be -= 1;
                        if be > cs && data.get(be - 1) == Some(&b'\r') {
                            be -= 1;
                        }
                    }
                    parts.push((cs, be.max(cs)));
                    if parts.len() >= MAX_PARTS {
                        return parts;
                    }
                }
                if is_close {
                    return parts;
                }
                current = Some(next.min(end));
            }
        }
        ls = next;
    }
    if let Some(cs) = current {
        parts.push((cs, end));
    }
    parts
}

/// Finds a part by its IMAP part number (`1.2.3`). A non-multipart message has only part 1
/// (its body); numbers below a message/rfc822 part address the encapsulated message's parts.
pub(crate) fn find_part<'p>(root: &'p Part, path: &[u32]) -> Option<&'p Part> {
    let mut cur = root;
    let mut at_message_root = true;
    for (i, &n) in path.iter().enumerate() {
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        match &cur.kind {
            Kind::Multipart(children) => {
                cur = children.get(idx)?;
            }
            _ if idx == 0 && at_message_root => {}
            _ => return None,
        }
        at_message_root = false;
        if i + 1 < path.len()
            && let Kind::Message(inner) = &cur.kind
        {
            cur = inner;
            at_message_root = true;
        }
    }
    Some(cur)
}

pub(crate) fn count_lines(data: &[u8]) -> usize {
    data.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_split() {
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"\r\nbody"), 2);
        assert_eq!(header_len(b"A: b\r\nB: c"), 10);
        assert_eq!(header_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_len(b""), 0);
    }

    #[test]
    fn field_iteration() {
        let h = b"Subject: hello\r\n world\r\nbogus line\r\nX-A : 1\r\n\r\nnot: header\r\n";
        let f: Vec<_> = fields(h).collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].value, b" hello\r\n world");
        assert_eq!(f[0].raw, b"Subject: hello\r\n world\r\n");
        assert_eq!(f[1].name, b"X-A");
        assert_eq!(unfold(f[0].value), b"hello world");
    }

    #[test]
    fn content_type_params() {
        let (t, st, p) = parse_content_type(
            b" Text/Plain (comment); charset=\"utf-8\"; format=flowed ; name*0=\"a\"; name*1=\"b.txt\"; title*0*=us-ascii'en'x%20; title*1*=y",
        )
        .unwrap();
        assert_eq!((t.as_str(), st.as_str()), ("Text", "Plain"));
        assert_eq!(param(&p, "charset"), Some(&b"utf-8"[..]));
        assert_eq!(param(&p, "format"), Some(&b"flowed"[..]));
        assert_eq!(param(&p, "name"), Some(&b"ab.txt"[..]));
        assert_eq!(param(&p, "title*"), Some(&b"us-ascii'en'x%20y"[..]));
        assert!(parse_content_type(b"text").is_none());
        assert!(parse_content_type(b"").is_none());
    }

    #[test]
    fn multipart_split() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b \r\n\r\ntwo\r\n--b--\r\nepilogue";
        let r = split_multipart(body, 0, body.len(), b"b");
        assert_eq!(r.len(), 2);
        assert_eq!(&body[r[0].0..r[0].1], b"A: 1\r\n\r\none");
        assert_eq!(&body[r[1].0..r[1].1], b"\r\ntwo");
        // prefix of another boundary is not a delimiter
        let body = b"--b\r\nx\r\n--bc\r\ny\r\n--b--";
        let r = split_multipart(body, 0, body.len(), b"b");
        assert_eq!(r.len(), 1);
        assert_eq!(&body[r[0].0..r[0].1], b"x\r\n--bc\r\ny");
        // missing close delimiter
        let body = b"--b\r\nx\r\n--b\r\ny\r\n";
        let r = split_multipart(body, 0, body.len(), b"b");
        assert_eq!(r.len(), 2);
        assert_eq!(&body[r[1].0..r[1].1], b"y\r\n");
        // empty parts
        let body = b"--b\r\n--b\r\n--b--";
        let r = split_multipart(body, 0, body.len(), b"b");
        assert_eq!(r, vec![(5, 5), (10, 10)]);
    }
}
