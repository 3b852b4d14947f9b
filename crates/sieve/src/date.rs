//! The `date` and `currentdate` tests (RFC 5260 §4, §5) and the `:index`/`:last` tags of
//! the `index` extension (RFC 5260 §6): what Roundcube's vacation form emits for a date
//! range (`currentdate :value "ge" "date" "2026-12-01"`) and its filter form for dates.
//!
//! Dates in header fields are RFC 5322 date-times (for `Received`, the part after the last
//! `;`); a field whose date does not parse is skipped. Without `:zone` or `:originalzone`
//! the date is shown in the server's local time zone, as the RFC asks.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};

/// The zone a date is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateZone {
    /// The server's local zone (no tag).
    Local,
    /// `:zone "+hhmm"`, in minutes east of UTC.
    Offset(i32),
    /// `:originalzone`: the zone written in the header field.
    Original,
}

/// `:index n` with `:last` (RFC 5260 §6): which occurrence of a header field to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldIndex {
    /// 1-based.
    pub(crate) n: u64,
    /// Counted from the last field.
    pub(crate) last: bool,
}

impl FieldIndex {
    /// The selected value of `values` (in message order), if there is one.
    pub(crate) fn pick(self, mut values: Vec<String>) -> Vec<String> {
        let Ok(n) = usize::try_from(self.n) else {
            return Vec::new();
        };
        if n == 0 || n > values.len() {
            return Vec::new();
        }
        let i = if self.last { values.len() - n } else { n - 1 };
        vec![values.swap_remove(i)]
    }
}

/// The date parts RFC 5260 §4.2 defines.
pub(crate) const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
];

/// `+hhmm` / `-hhmm` (RFC 5260 §4.1): minutes east of UTC.
pub(crate) fn parse_zone(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = i32::from(b[1] - b'0') * 10 + i32::from(b[2] - b'0');
    let m = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    (h <= 23 && m <= 59).then_some(sign * (h * 60 + m))
}

/// The date-time of a header field value, if it holds one.
pub(crate) fn parse_field(name: &str, value: &str) -> Option<DateTime<FixedOffset>> {
    let mut s = value;
    if name.eq_ignore_ascii_case("received") {
        s = s.rsplit_once(';')?.1;
    }
    let mut s = s.trim();
    // A trailing comment such as "(UTC)" or "(CET)".
    while let Some(open) = s.rfind('(').filter(|_| s.ends_with(')')) {
        s = s[..open].trim_end();
    }
    DateTime::parse_from_rfc2822(s).ok()
}

/// `date` shown in `zone` (`now_local` gives the local offset of an instant).
pub(crate) fn in_zone(date: DateTime<FixedOffset>, zone: DateZone) -> DateTime<FixedOffset> {
    match zone {
        DateZone::Original => date,
        DateZone::Offset(min) => match FixedOffset::east_opt(min * 60) {
            Some(z) => date.with_timezone(&z),
            None => date,
        },
        DateZone::Local => date.with_timezone(&chrono::Local).fixed_offset(),
    }
}

/// The current time in `zone` (`:originalzone` is not allowed with `currentdate`).
pub(crate) fn now_in_zone(now: DateTime<Utc>, zone: DateZone) -> DateTime<FixedOffset> {
    in_zone(now.fixed_offset(), zone)
}

/// The `part` of `d` as RFC 5260 §4.2 writes it; `None` for an unknown part.
pub(crate) fn part(d: &DateTime<FixedOffset>, part: &str) -> Option<String> {
    Some(match part.to_ascii_lowercase().as_str() {
        "year" => format!("{:04}", d.year()),
        "month" => format!("{:02}", d.month()),
        "day" => format!("{:02}", d.day()),
        "date" => format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
        "julian" => {
            // The Modified Julian Day: days since 1858-11-17.
            let epoch = NaiveDate::from_ymd_opt(1858, 11, 17)?;
            (d.date_naive() - epoch).num_days().to_string()
        }
        "hour" => format!("{:02}", d.hour()),
        "minute" => format!("{:02}", d.minute()),
        "second" => format!("{:02}", d.second()),
        "time" => format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second()),
        "iso8601" => d.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "std11" => d.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        "zone" => d.format("%z").to_string(),
        "weekday" => d.weekday().num_days_from_sunday().to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_parts() {
        assert_eq!(parse_zone("+0130"), Some(90));
        assert_eq!(parse_zone("-0800"), Some(-480));
        for bad in ["0100", "+100", "+2400", "+0060", "+01:00", ""] {
            assert_eq!(parse_zone(bad), None, "{bad}");
        }
        let d = parse_field("Date", "Sat, 02 Apr 2005 18:23:05 +0100 (CET)").unwrap();
        let got: Vec<String> = DATE_PARTS.iter().map(|p| part(&d, p).unwrap()).collect();
        assert_eq!(
            got,
            [
                "2005",
                "04",
                "02",
                "2005-04-02",
                "53462",
                "18",
                "23",
                "05",
                "18:23:05",
                "2005-04-02T18:23:05+01:00",
                "Sat, 02 Apr 2005 18:23:05 +0100",
                "+0100",
                "6",
            ]
        );
        let utc = in_zone(d, DateZone::Offset(0));
        assert_eq!(part(&utc, "time").unwrap(), "17:23:05");
        let west = in_zone(d, DateZone::Offset(-600));
        assert_eq!(part(&west, "date").unwrap(), "2005-04-02");
        assert_eq!(part(&west, "hour").unwrap(), "07");
        assert_eq!(part(&d, "fortnight"), None);
        let r = parse_field(
            "Received",
            "from a (b [1.2.3.4]) by mx; Mon, 1 Jan 2024 10:00:00 -0000",
        )
        .unwrap();
        assert_eq!(part(&r, "date").unwrap(), "2024-01-01");
        assert!(parse_field("Date", "yesterday").is_none());
    }

    #[test]
    fn index_picks_one_field() {
        let v = || vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let pick = |n, last| FieldIndex { n, last }.pick(v());
        assert_eq!(pick(1, false), ["a"]);
        assert_eq!(pick(1, true), ["c"]);
        assert_eq!(pick(3, true), ["a"]);
        assert!(pick(4, false).is_empty());
        assert!(pick(0, false).is_empty());
    }
}
