//! Output helpers: tables, sizes, JSON/YAML.

use serde::Serialize;

use super::cli::Format;

/// Print `value` as JSON or YAML (`Table` falls back to JSON).
pub fn print_structured<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Format::Json | Format::Table => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// Left-aligned columns separated by at least three spaces.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// SI sizes with three significant digits, as crictl shows them (`2.24MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = format!("{value:.3}");
    let digits: String = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        text[..text.len().min(4)].to_string()
    };
    let digits = if digits.contains('.') {
        digits.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        digits
    };
    format!("{digits}{}", UNITS[unit])
}

/// First 13 hex chars of a `sha256:` ID, as crictl truncates.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(13).collect()
}

/// `2 minutes ago`, as crictl shows creation times (docker's go-units
/// `HumanDuration`), for a CRI timestamp in nanoseconds since the epoch.
pub fn ago(created_nanos: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    format!(
        "{} ago",
        human_duration(now.saturating_sub(created_nanos).max(0) / 1_000_000_000)
    )
}

fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    // go-units rounds hours to the nearest.
    let hours = (seconds + 1800) / 3600;
    match seconds {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// An ID as a table shows it: 13 characters unless `--no-trunc`.
pub fn table_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        short_id(id)
    }
}

/// A verbose `info` map with each JSON value parsed, in key order.
pub fn parsed_info(info: std::collections::HashMap<String, String>) -> serde_json::Map<String, serde_json::Value> {
    let sorted: std::collections::BTreeMap<_, _> = info.into_iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_crictl() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(17), "17 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_240_000), "2.24MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000_000), "1MB");
    }

    #[test]
    fn ids() {
        assert_eq!(short_id(&format!("sha256:{}", "ab".repeat(32))), "ababababababa");
    }
}
