//! The protocol log's time source, a trait so tests can move the date, and
//! the two timestamp formats the log uses (ISO 8601 in lines and headers,
//! `yyyymmdd` in file names), always in UTC as Exchange writes them.

use std::fmt::{self, Write as _};

use time::{Date, OffsetDateTime, UtcOffset};

/// Where the protocol log reads the time.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current time (any offset; the log converts to UTC).
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// `2026-11-23T09:00:01.123Z`: UTC, milliseconds, a literal `Z`.
pub(crate) fn push_timestamp(out: &mut String, t: OffsetDateTime) {
    let t = t.to_offset(UtcOffset::UTC);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
}

/// The UTC date of `t`, which decides the file a line goes to.
pub(crate) fn utc_date(t: OffsetDateTime) -> Date {
    t.to_offset(UtcOffset::UTC).date()
}

/// `20261123`, as in `RECV20261123-1.LOG`.
pub(crate) fn file_date(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let mut s = String::new();
        push_timestamp(&mut s, datetime!(2026-11-23 10:00:01.123456 +01:00));
        assert_eq!(s, "2026-11-23T09:00:01.123Z");
        assert_eq!(
            utc_date(datetime!(2026-11-24 00:30 +01:00)),
            date!(2026 - 11 - 23)
        );
        assert_eq!(file_date(date!(2026 - 01 - 05)), "20260105");
    }
}
