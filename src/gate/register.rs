//! The access register Decreto 9 asks a service to keep: for each authenticated access, who
//! (as [`AccessSubject`] names them: a masked RUN unless configured) and when, in UTC. These
//! are its lines as JSON, one object a line, for a host that has no access log of its own to
//! carry the person (the Unit component); Envoy's access log takes the person from the
//! request's filter state instead.
//!
//! [`AccessSubject`]: crate::config::AccessSubject

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
