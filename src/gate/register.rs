//! The access register Decreto 9 asks a service to keep: for each authenticated access, who
//! (as [`AccessSubject`] names them: a masked RUN unless configured) and when, in UTC. These
//! are its lines as JSON, one object a line, for a host that has no access log of its own to
//! carry the person (the Unit component); Envoy's access log takes the person from the
//! request's filter state instead.
//!
//! Logins, logouts and refusals are a [`Record`] each, which an adapter logs as one JSON line
//! with the request's id, on both hosts.
//!
//! [`AccessSubject`]: crate::config::AccessSubject

/// A login, a logout or a refusal, for the register: one JSON line ([`Record::line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `login`, `logout` or `refused`.
    pub event: &'static str,
    /// The person, as the register names them, when the gate knows who it is.
    pub subject: Option<String>,
    /// Why: a failed login's reason, `not_in_allowed_runs`, `application` (a logout the
    /// application asked for).
    pub reason: Option<&'static str>,
    /// The reference shown on the page, which the log line of the answer also holds.
    pub reference: Option<String>,
    /// The request's `X-Request-Id`, when it had one (Envoy gives every request one).
    pub request_id: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
}

impl Record {
    /// A record of `event` with nothing else known yet; the gate fills in the request's id and
    /// time where it answers.
    pub(super) fn new(event: &'static str) -> Self {
        Self { event, subject: None, reason: None, reference: None, request_id: None, time: 0 }
    }

    /// The line to log: `{"register":"login","time":…,"subject":…,"request_id":…,…}`.
    #[must_use]
    pub fn line(&self) -> String {
        serde_json::json!({
            "register": self.event,
            "time": utc(self.time),
            "subject": self.subject,
            "reason": self.reason,
            "ref": self.reference,
            "request_id": self.request_id,
        })
        .to_string()
    }
}

/// The JSON line for one authenticated access: `{"register":"access","time":…,"subject":…,
/// "method":…,"request_id":…}`. The path is left out: a legacy application's paths may hold a
/// RUN, and no log line holds a full one.
#[must_use]
pub fn access_line(subject: &str, method: &str, now: u64, request_id: Option<&str>) -> String {
    serde_json::json!({
        "register": "access",
        "time": utc(now),
        "subject": subject,
        "method": method,
        "request_id": request_id,
    })
    .to_string()
}

/// Seconds since the Unix epoch as RFC 3339 UTC, `2026-12-01T23:05:09Z` (the days to a civil
/// date by Howard Hinnant's algorithm; the core has no clock or calendar crate).
#[must_use]
pub fn utc(now: u64) -> String {
    let days = now / 86_400;
    let secs = now % 86_400;
    // Shifted so that a 400-year era starts on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_record_is_one_json_line() {
        let record = Record {
            subject: Some("*****444-4".into()),
            reason: Some("not_in_allowed_runs"),
            reference: Some("R1".into()),
            request_id: Some("id-1".into()),
            time: 1_700_000_000,
            ..Record::new("refused")
        };
        let v: serde_json::Value = serde_json::from_str(&record.line()).unwrap();
        assert_eq!(v["register"], "refused");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!((v["subject"].as_str(), v["reason"].as_str()), (Some("*****444-4"), Some("not_in_allowed_runs")));
        assert_eq!((v["ref"].as_str(), v["request_id"].as_str()), (Some("R1"), Some("id-1")));
        assert!(!record.line().contains('\n'));
    }

    #[test]
    fn times_are_written_in_utc() {
        for (now, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (1_798_931_109, "2027-01-02T23:05:09Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(utc(now), want, "{now}");
        }
    }

    #[test]
    fn an_access_line_is_one_json_object_without_the_path() {
        let line = access_line("*****444-4", "GET", 1_700_000_000, Some("abc-1"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["register"], "access");
        assert_eq!(v["subject"], "*****444-4");
        assert_eq!(v["time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["request_id"], "abc-1");
        assert!(!line.contains('\n') && v.get("path").is_none(), "{line}");
        let v: serde_json::Value = serde_json::from_str(&access_line("x\"y", "GET", 0, None)).unwrap();
        assert_eq!((v["subject"].as_str(), v["request_id"].is_null()), (Some("x\"y"), true));
    }
}
