//! Plain-text tables for people; JSON goes through serde.

/// Renders rows as a left-aligned table with a header and a rule.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
    out
}

/// The `p` quantile (0..=1) of sorted nanosecond samples, in microseconds.
pub fn percentile_us(sorted_nanos: &[u64], p: f64) -> f64 {
    let last = sorted_nanos.len().saturating_sub(1);
    sorted_nanos.get(((sorted_nanos.len() as f64 * p) as usize).min(last)).map_or(0.0, |&n| n as f64 / 1000.0)
}

/// Formats a number with thousands separators.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_numbers_group() {
        let t = table(&["a", "long header"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    long header\n---  -----------\nxyz  1\n");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        let samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&samples, 0.5), 51.0);
        assert_eq!(percentile_us(&samples, 0.99), 100.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
