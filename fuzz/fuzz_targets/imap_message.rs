//! imap-message: a hostile message through MIME parsing, ENVELOPE, BODY/BODYSTRUCTURE,
//! every kind of section (BODY[…], BINARY[…], partials), header decoding and the cached
//! summary (built, then read back; and read from arbitrary bytes, as from a damaged cache),
//! the PREVIEW text and the THREADID thread root.
#![no_main]

use std::num::NonZeroU32;
use std::sync::OnceLock;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use libfuzzer_sys::fuzz_target;
use postern_imap_message as im;

/// BODY[…] sections (with partials) and BINARY[…] parts to fetch, parsed once.
type Items = (
    Vec<(Option<Section<'static>>, Option<(u32, NonZeroU32)>)>,
    Vec<Vec<NonZeroU32>>,
);

fn items() -> &'static Items {
    static ITEMS: OnceLock<Items> = OnceLock::new();
    ITEMS.get_or_init(|| {
        let mut names = String::from("BODY[] BODY[]<5.10> BODY[TEXT] BODY[HEADER]");
        names.push_str(" BODY[HEADER.FIELDS (Subject From X-Unknown)]");
        names.push_str(" BODY[HEADER.FIELDS.NOT (Received)]");
        for p in ["1", "2", "3", "1.1", "1.2", "2.1", "2.2.1", "1.1.1.1", "4.3.2.1.1"] {
            names.push_str(&format!(
                " BODY[{p}] BODY[{p}]<0.3> BODY[{p}.MIME] BODY[{p}.HEADER] BODY[{p}.TEXT] \
                 BODY[{p}.HEADER.FIELDS (Content-Type)] BINARY[{p}] BINARY[{p}]<1.7> BINARY.SIZE[{p}]"
            ));
        }
        let line = format!("a FETCH 1 ({names})\r\n");
        let (_, cmd) = CommandCodec::default()
            .decode(line.as_bytes())
            .expect("the FETCH line parses");
        let CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(list),
            ..
        } = cmd.into_static().body
        else {
            panic!("not a FETCH with items");
        };
        let mut body = Vec::new();
        let mut binary = Vec::new();
        for item in list {
            match item {
                MessageDataItemName::BodyExt {
                    section, partial, ..
                } => body.push((section, partial)),
                MessageDataItemName::Binary { section, .. }
                | MessageDataItemName::BinarySize { section } => binary.push(section),
                _ => {}
            }
        }
        (body, binary)
    })
}

fuzz_target!(|msg: &[u8]| {
    // A cache blob is disk input too.
    if let Some(s) = im::Summary::from_bytes(msg) {
        let _ = s.to_bytes();
    }
    let summary = im::Summary::from_message(msg);
    assert_eq!(
        im::Summary::from_bytes(&summary.to_bytes()).as_ref(),
        Some(&summary),
        "the summary does not read back"
    );
    assert_eq!(
        summary.envelope,
        im::envelope(msg),
        "ENVELOPE differs from the summary's"
    );
    assert_eq!(
        summary.body_structure,
        im::body_structure(msg, true),
        "BODYSTRUCTURE differs from the summary's"
    );
    let _ = im::body_structure(msg, false);
    let (body, binary) = items();
    for (section, partial) in body {
        if let Some(data) = im::section(msg, section.as_ref()) {
            if let Some((offset, len)) = partial {
                let _ = im::partial(&data, *offset, len.get());
            }
        }
        let _ = summary.header_section(section.as_ref());
    }
    for part in binary {
        let full = im::binary_section(msg, part);
        let size = im::binary_size(msg, part);
        if let (Ok(full), Ok(size)) = (&full, &size) {
            assert_eq!(
                full.len() as u64,
                u64::from(*size),
                "BINARY.SIZE differs from BINARY"
            );
        }
    }
    let _ = im::header_block(msg);
    let _ = im::body_text(msg);
    for name in ["Subject", "From", "Content-Type"] {
        let _ = im::header_values(msg, name);
        let _ = im::decoded_header_value(msg, name);
    }
    let _ = im::decode_header_value(msg);
    if let Ok(text) = std::str::from_utf8(msg) {
        let _ = im::base_subject(text);
    }
    let _ = im::sort_key(msg);
    // PREVIEW (RFC 8970) and OBJECTID's thread root: at most 256 characters, no control
    // characters (the text goes into a FETCH response), no surrounding whitespace.
    let p = im::preview(msg);
    assert!(p.chars().count() <= im::PREVIEW_CHARS, "preview too long");
    assert!(!p.chars().any(char::is_control), "control character in a preview");
    assert_eq!(p.trim(), p, "preview not trimmed");
    let _ = im::thread_root(msg);
});
