//! ENVELOPE and BODY / BODYSTRUCTURE.

use imap_codec::imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{IString, NString, Vec1},
    envelope::{Address, Envelope},
};

use crate::{
    address::{Item, parse_address_list},
    decode::{istr, nstr},
    mime::{self, Kind, Mime, Part, count_lines, fields, header_len, unfold},
};

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The ENVELOPE of a message (RFC 3501 §7.4.2, RFC 9051 §7.5.2).
pub fn envelope(msg: &[u8]) -> Envelope<'static> {
    envelope_from_header(msg.get(..header_len(msg)).unwrap_or_default())
}

/// Text shown to people (subject, display names), as Dovecot sends it: line breaks removed,
/// runs of white space collapsed to one space, leading and trailing white space trimmed.
pub(crate) fn for_humans(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut last_space = true;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => {
                if !last_space {
                    out.push(b' ');
                }
                last_space = true;
            }
            _ => {
                out.push(b);
                last_space = false;
            }
        }
    }
    if out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

fn addresses(value: &[u8]) -> Vec<Address<'static>> {
    parse_address_list(value)
        .into_iter()
        .map(|item| match item {
            Item::Mailbox(m) => Address {
                name: nstr(m.name.as_deref().map(for_humans).as_deref()),
                adl: nstr(m.route.as_deref()),
                mailbox: nstr(Some(&m.mailbox)),
                host: nstr(Some(&m.host)),
            },
            Item::GroupStart(name) => Address {
                name: NString(None),
                adl: NString(None),
                mailbox: nstr(Some(&name)),
                host: NString(None),
            },
            Item::GroupEnd => Address {
                name: NString(None),
                adl: NString(None),
                mailbox: NString(None),
                host: NString(None),
            },
        })
        .collect()
}

/// The ENVELOPE from a header block alone.
pub(crate) fn envelope_from_header(header: &[u8]) -> Envelope<'static> {
    let mut date = None;
    let mut subject = None;
    let mut in_reply_to = None;
    let mut message_id = None;
    let mut from = None;
    let mut sender = None;
    let mut reply_to = None;
    let mut to = None;
    let mut cc = None;
    let mut bcc = None;
    for f in fields(header) {
        let text = |slot: &mut Option<Vec<u8>>| {
            if slot.is_none() {
                *slot = Some(unfold(f.value));
            }
        };
        let addr = |slot: &mut Option<Vec<Address<'static>>>| {
            if slot.is_none() {
                *slot = Some(addresses(f.value));
            }
        };
        let name = f.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("date") {
            text(&mut date);
        } else if is("subject") {
            if subject.is_none() {
                subject = Some(for_humans(f.value));
            }
        } else if is("in-reply-to") {
            text(&mut in_reply_to);
        } else if is("message-id") {
            text(&mut message_id);
        } else if is("from") {
            addr(&mut from);
        } else if is("sender") {
            addr(&mut sender);
        } else if is("reply-to") {
            addr(&mut reply_to);
        } else if is("to") {
            addr(&mut to);
        } else if is("cc") {
            addr(&mut cc);
        } else if is("bcc") {
            addr(&mut bcc);
        }
    }
    let from = from.unwrap_or_default();
    let or_from = |v: Option<Vec<Address<'static>>>| match v {
        Some(v) if !v.is_empty() => v,
        _ => from.clone(),
    };
    Envelope {
        date: nstr(date.as_deref()),
        subject: nstr(subject.as_deref()),
        sender: or_from(sender),
        reply_to: or_from(reply_to),
        from: from.clone(),
        to: to.unwrap_or_default(),
        cc: cc.unwrap_or_default(),
        bcc: bcc.unwrap_or_default(),
        in_reply_to: nstr(in_reply_to.as_deref()),
        message_id: nstr(message_id.as_deref()),
    }
}

/// BODY (`extended == false`) or BODYSTRUCTURE (`extended == true`) of a message.
pub fn body_structure(msg: &[u8], extended: bool) -> BodyStructure<'static> {
    let root = mime::parse_message(msg);
    build(msg, &root, extended)
}

fn params_list(params: &mime::Params) -> Vec<(IString<'static>, IString<'static>)> {
    params.iter().map(|(n, v)| (istr(n), istr(v))).collect()
}

fn disposition_tail(m: &Mime) -> Disposition<'static> {
    Disposition {
        disposition: m
            .disposition
            .as_ref()
            .map(|(t, p)| (istr(t), params_list(p))),
        tail: Some(Language {
            language: m.language.iter().map(|l| istr(l)).collect(),
            tail: Some(Location {
                location: nstr(m.location.as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

pub(crate) fn build(data: &[u8], part: &Part, extended: bool) -> BodyStructure<'static> {
    let m = &part.mime;
    if let Kind::Multipart(children) = &part.kind {
        let bodies: Vec<BodyStructure<'static>> =
            children.iter().map(|c| build(data, c, extended)).collect();
        let bodies = Vec1::try_from(bodies).unwrap_or_else(|_| {
            // parse_message always yields at least one child; keep a valid structure anyway
            Vec1::from(empty_text_part(extended))
        });
        return BodyStructure::Multi {
            bodies,
            subtype: istr(m.subtype.as_bytes()),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: params_list(&m.params),
                tail: Some(disposition_tail(m)),
            }),
        };
    }
    let body = part.body(data);
    let mut params = params_list(&m.params);
    let is_text = m.is_type("text");
    if is_text && m.charset().is_none() {
        params.push((istr(b"charset"), istr(b"us-ascii")));
    }
    let specific = match &part.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope_from_header(inner.header(data))),
            body_structure: Box::new(build(data, inner, extended)),
            number_of_lines: clamp_u32(count_lines(body)),
        },
        _ if is_text => SpecificFields::Text {
            subtype: istr(m.subtype.as_bytes()),
            number_of_lines: clamp_u32(count_lines(body)),
        },
        _ => SpecificFields::Basic {
            r#type: istr(m.mtype.as_bytes()),
            subtype: istr(m.subtype.as_bytes()),
        },
    };
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: params,
                id: nstr(m.id.as_deref()),
                description: nstr(m.description.as_deref()),
                content_transfer_encoding: istr(m.cte.as_deref().unwrap_or(b"7bit")),
                size: clamp_u32(body.len()),
            },
            specific,
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstr(m.md5.as_deref()),
            tail: Some(disposition_tail(m)),
        }),
    }
}

fn empty_text_part(extended: bool) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istr(b"charset"), istr(b"us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istr(b"7bit"),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: istr(b"plain"),
                number_of_lines: 0,
            },
        },
        extension_data: extended.then_some(SinglePartExtensionData {
            md5: NString(None),
            tail: None,
        }),
    }
}

/// BODY from BODYSTRUCTURE: the same tree without extension data.
pub(crate) fn strip_extensions(bs: &BodyStructure<'static>) -> BodyStructure<'static> {
    match bs {
        BodyStructure::Single { body, .. } => BodyStructure::Single {
            body: Body {
                basic: body.basic.clone(),
                specific: match &body.specific {
                    SpecificFields::Message {
                        envelope,
                        body_structure,
                        number_of_lines,
                    } => SpecificFields::Message {
                        envelope: envelope.clone(),
                        body_structure: Box::new(strip_extensions(body_structure)),
                        number_of_lines: *number_of_lines,
                    },
                    other => other.clone(),
                },
            },
            extension_data: None,
        },
        BodyStructure::Multi {
            bodies, subtype, ..
        } => {
            let stripped: Vec<_> = bodies.as_ref().iter().map(strip_extensions).collect();
            BodyStructure::Multi {
                bodies: Vec1::try_from(stripped)
                    .unwrap_or_else(|_| Vec1::from(empty_text_part(false))),
                subtype: subtype.clone(),
                extension_data: None,
            }
        }
    }
}
