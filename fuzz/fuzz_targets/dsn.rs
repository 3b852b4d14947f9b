//! DSN generation from hostile input: recipient addresses, remote replies, envelope ids
//! and the original message all come from other parties. The DSN must stay well-formed
//! mail: CRLF only, header lines within 998 octets, no injected header fields.
#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use postern_dsn::{Action, RecipientReport, Report, Ret, build};

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    let len = usize::from(u.arbitrary::<u8>()?) * 8;
    let bytes = u.bytes(len.min(u.len()))?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn recipient(u: &mut Unstructured<'_>) -> Result<RecipientReport> {
    Ok(RecipientReport {
        final_recipient: text(u)?,
        original_recipient: Option::<()>::arbitrary(u)?.map(|()| text(u)).transpose()?,
        action: *u.choose(&[
            Action::Failed,
            Action::Delayed,
            Action::Delivered,
            Action::Relayed,
            Action::Expanded,
        ])?,
        status: (
            *u.choose(&[2, 4, 5])?,
            u.int_in_range(0..=999)?,
            u.int_in_range(0..=999)?,
        ),
        remote_mta: Option::<()>::arbitrary(u)?.map(|()| text(u)).transpose()?,
        diagnostic: Option::<()>::arbitrary(u)?.map(|()| text(u)).transpose()?,
        last_attempt: u.arbitrary()?,
        will_retry_until: u.arbitrary()?,
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let reporting_mta = text(u)?;
    let to = text(u)?;
    let envid = Option::<()>::arbitrary(u)?.map(|()| text(u)).transpose()?;
    let mut recipients = vec![recipient(u)?];
    while recipients.len() < 8 && u.arbitrary()? {
        recipients.push(recipient(u)?);
    }
    let ret = if u.arbitrary()? {
        Ret::Full
    } else {
        Ret::Headers
    };
    let max_original = *u.choose(&[0, 64, 1 << 20])?;
    let arrival = u.arbitrary()?;
    let original = std::mem::replace(u, Unstructured::new(&[])).take_rest();
    let report = Report {
        reporting_mta: &reporting_mta,
        postmaster: "postmaster@mx.example.test",
        to: &to,
        envid: envid.as_deref(),
        arrival,
        recipients,
        original,
        ret,
        max_original,
    };
    let Ok(dsn) = build(&report) else {
        return Ok(());
    };
    for (i, &b) in dsn.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && dsn[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert!(dsn.get(i + 1) == Some(&b'\n'), "bare CR at {i}"),
            _ => {}
        }
    }
    let end = dsn
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    let mut fields = Vec::new();
    for line in dsn[..end].split(|&b| b == b'\n') {
        assert!(
            line.len() <= 999,
            "header line of {} octets: {:?}",
            line.len(),
            String::from_utf8_lossy(&line[..line.len().min(300)])
        );
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            fields.push(String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    for name in [
        "to",
        "from",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        let n = fields.iter().filter(|f| *f == name).count();
        assert!(n <= 1, "{n} {name} fields in {fields:?}");
    }
    assert!(
        fields.iter().all(|f| !f.is_empty() && !f.contains(' ')),
        "a header line that is not a field: {fields:?}"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
