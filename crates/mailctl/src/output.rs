//! Tables for people, sizes and times.

/// A plain text table with aligned columns.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        postern_control::render_table(&header, &self.rows)
    }

    pub(crate) fn print(&self) {
        if self.rows.is_empty() {
            println!("(none)");
        } else {
            print!("{}", self.render());
        }
    }
}

/// Parses `0`, `1024`, `500K`, `20M`, `2G`, `1T` (binary units; a trailing `B`/`iB` is allowed).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1i64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: i64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a size (examples: 0, 500M, 2G)"))?;
    if n < 0 {
        anyhow::bail!("a size cannot be negative");
    }
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("{s:?} is too large"))
}

/// `0` → `-`, otherwise the largest whole binary unit.
pub(crate) fn format_size(n: i64) -> String {
    if n <= 0 {
        return "-".into();
    }
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

pub(crate) use postern_control::format_time;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10KB").unwrap(), 10 << 10);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(2 << 30), "2G");
        assert_eq!(format_size(0), "-");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "-");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xxx".into(), "y".into()]);
        assert_eq!(t.render(), "A    BB\nxxx  y\n");
    }
}
