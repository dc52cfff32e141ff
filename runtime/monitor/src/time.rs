//! Timestamps as the CRI log and the state records write them:
//! `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, always nine fractional digits;
//! Go's `time.RFC3339Nano` parses any number of them).

use crate::buf::Buf;
use crate::sys;

/// One formatted timestamp (30 bytes until the year 10000).
pub type Stamp = Buf<32>;

/// Now, formatted.
pub fn now() -> Stamp {
    let (secs, nanos) = sys::realtime();
    format(secs, nanos)
}

/// `secs`.`nanos` after the Unix epoch, formatted.
pub fn format(secs: u64, nanos: u32) -> Stamp {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let mut out = Stamp::new();
    out.push_padded(year, 4).push(b"-").push_padded(month, 2).push(b"-");
    out.push_padded(day, 2).push(b"T").push_padded(rem / 3600, 2).push(b":");
    out.push_padded(rem % 3600 / 60, 2).push(b":").push_padded(rem % 60, 2);
    out.push(b".").push_padded(u64::from(nanos), 9).push(b"Z");
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        for (secs, nanos, text) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_795_403_045, 123_456_789, "2026-11-23T03:04:05.123456789Z"),
            (4_102_444_799, 999_999_999, "2099-12-31T23:59:59.999999999Z"),
        ] {
            assert_eq!(format(secs, nanos).as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn now_is_thirty_bytes_and_moves_forward() {
        let a = now();
        let b = now();
        assert_eq!(a.len(), 30);
        assert!(a.as_bytes() <= b.as_bytes());
    }
}
