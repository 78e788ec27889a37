//! The access section, read into [`crate::policy`] types: path rules (first match wins), the
//! migration mode that lets the old login run beside ClaveÚnica, and the pilot list of RUNs
//! allowed through.

use serde_json::{Map, Value};

use super::error::ProblemKind;
use super::reader::Reader;
use super::session::valid_cookie_name;
use crate::policy::{self, Migration, MigrationMode, PathCase, PathMatch, Rule, RuleAction};
use crate::primitives::run::Run;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["rules", "path_case", "migration", "allowed_runs"];

const RULE_KEYS: &[&str] = &["prefix", "exact", "regex", "methods", "action"];

/// The access section, read; its fields become [`super::Config`]'s.
pub(super) struct Access {
    pub(super) rules: Vec<Rule>,
    pub(super) migration: Migration,
    pub(super) allowed_runs: Option<Vec<Run>>,
}

/// Reads the section. Nothing in it is required: a wrong part is left out, with a problem.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>) -> Access {
    let case = match r.string("path_case").as_deref() {
        None | Some("sensitive") => PathCase::Sensitive,
        Some("insensitive") => PathCase::Insensitive,
        Some(_) => {
            r.problem("path_case", ProblemKind::OneOf(&["sensitive", "insensitive"]));
            PathCase::Sensitive
        }
    };
    let rules = r.list("rules", "a list of rules").map_or_else(Vec::new, |items| {
        items.iter().enumerate().filter_map(|(i, item)| rule(r, &format!("rules[{i}]"), item, case)).collect()
    });
    let migration = migration(r);
    let allowed_runs = r.list("allowed_runs", "a list of RUNs").map(|items| {
        let mut runs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str().map(Run::parse) {
                Some(Ok(run)) => runs.push(run),
                Some(Err(e)) => r.item_problem("allowed_runs", i, ProblemKind::BadRun(e)),
                None => r.item_problem("allowed_runs", i, ProblemKind::MustBe("a RUN such as 12345678-5")),
            }
        }
        runs
    });
    Access { rules, migration, allowed_runs }
}

/// One rule, at `key` (`rules[2]`); `None` when any part of it is wrong.
fn rule(r: &mut Reader<'_>, key: &str, item: &Value, case: PathCase) -> Option<Rule> {
    let Value::Object(m) = item else {
        r.problem(key, ProblemKind::MustBe("an object"));
        return None;
    };
    for k in m.keys().filter(|k| !RULE_KEYS.contains(&k.as_str())) {
        r.problem(&format!("{key}.{k}"), ProblemKind::UnknownKey);
    }
    let path = rule_path(r, key, m, case);
    let methods = match m.get("methods") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(ms)) if !ms.is_empty() => ms
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic())))
            .map(|o| o.map(str::to_ascii_uppercase))
            .collect::<Option<Vec<_>>>()
            .map(Some),
        Some(_) => None,
    };
    if methods.is_none() {
        r.problem(&format!("{key}.methods"), ProblemKind::MustBe("a non-empty list of method names"));
    }
    let action = match m.get("action").and_then(Value::as_str) {
        Some("enforce") => Some(RuleAction::Enforce),
        Some("optional") => Some(RuleAction::Optional),
        Some("public") => Some(RuleAction::Public),
        _ => {
            r.problem(&format!("{key}.action"), ProblemKind::OneOf(&["enforce", "optional", "public"]));
            None
        }
    };
    Some(Rule { path: path?, methods: methods?, action: action?, case })
}

/// Exactly one of `prefix`, `exact` (strings starting with `/`) and `regex`. Escapes in a
/// `prefix` or `exact` are kept in upper case, as requests' are when rules are matched.
fn rule_path(r: &mut Reader<'_>, key: &str, m: &Map<String, Value>, case: PathCase) -> Option<PathMatch> {
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(|p| policy::upper_escapes(p).into_owned());
    let given: Vec<&str> = ["prefix", "exact", "regex"].into_iter().filter(|k| m.contains_key(*k)).collect();
    let kind = match (given.as_slice(), text("prefix"), text("exact"), text("regex")) {
        (["prefix"], Some(p), _, _) if p.starts_with('/') => return Some(PathMatch::Prefix(p)),
        (["exact"], _, Some(p), _) if p.starts_with('/') => return Some(PathMatch::Exact(p)),
        (["regex"], _, _, Some(p)) => match policy::compile_regex(&p, case) {
            Ok(re) => return Some(PathMatch::Regex(re)),
            Err(e) => {
                r.problem(&format!("{key}.regex"), ProblemKind::BadRegex(e));
                return None;
            }
        },
        ([], ..) => ProblemKind::RulePathMissing,
        ([_], ..) => ProblemKind::RulePathShape,
        _ => ProblemKind::RulePathTwice,
    };
    r.problem(key, kind);
    None
}

fn migration(r: &mut Reader<'_>) -> Migration {
    let mut migration = Migration::default();
    let Some(mut s) = r.section("migration", "migration.", &["mode", "legacy_cookies", "canary_percent"]) else {
        return migration;
    };
    migration.mode = match s.string("mode").as_deref() {
        None | Some("enforce") => MigrationMode::Enforce,
        Some("parallel") => MigrationMode::Parallel,
        Some("canary") => MigrationMode::Canary,
        Some("report_only") => MigrationMode::ReportOnly,
        Some(_) => {
            s.problem("mode", ProblemKind::OneOf(&["enforce", "parallel", "canary", "report_only"]));
            MigrationMode::Enforce
        }
    };
    if let Some(items) = s.list("legacy_cookies", "a list of cookie names") {
        for (i, item) in items.iter().enumerate() {
            match item.as_str().filter(|n| valid_cookie_name(n) || n.starts_with("__")) {
                Some(n) => migration.legacy_cookies.push(n.to_string()),
                None => s.item_problem("legacy_cookies", i, ProblemKind::MustBe("a cookie name")),
            }
        }
    }
    if matches!(migration.mode, MigrationMode::Parallel | MigrationMode::Canary) && migration.legacy_cookies.is_empty()
    {
        s.problem("legacy_cookies", ProblemKind::LegacyCookiesNeeded);
    }
    let percent = s.integer("canary_percent", 0, 0, 100);
    migration.canary_percent = u8::try_from(percent).unwrap_or(100);
    if migration.mode == MigrationMode::Canary && s.get("canary_percent").is_none() {
        s.problem("canary_percent", ProblemKind::CanaryPercentNeeded);
    }
    r.absorb(s);
    migration
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_kinds, assert_refused, base, kind_of, load, with};
    use super::super::ProblemKind;
    use super::*;
    use crate::primitives::run::RunError;

    #[test]
    fn rollout_settings() {
        let mut v = base();
        v["rules"] = json!([{"prefix": "/static/", "action": "public"}, {"regex": "/a/[0-9]+", "methods": ["get"], "action": "optional"}]);
        v["migration"] = json!({"mode": "canary", "legacy_cookies": ["PHPSESSID"], "canary_percent": 25});
        v["allowed_runs"] = json!(["44.444.444-4", "55555555-5"]);
        let c = load(&v).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[1].methods, Some(vec!["GET".to_string()]));
        assert_eq!(c.migration.mode, MigrationMode::Canary);
        assert_eq!(c.migration.canary_percent, 25);
        assert_eq!(c.allowed_runs.as_ref().map(Vec::len), Some(2));
        assert!(c.rules.iter().all(|r| r.case == PathCase::Sensitive));
        v["path_case"] = json!("insensitive");
        v["rules"] =
            json!([{"prefix": "/caf%c3%a9/", "action": "public"}, {"regex": "/a/[0-9]+", "action": "enforce"}]);
        let c = load(&v).unwrap();
        assert!(c.rules.iter().all(|r| r.case == PathCase::Insensitive));
        assert!(matches!(&c.rules[0].path, PathMatch::Prefix(p) if p == "/caf%C3%A9/"), "{:?}", c.rules[0]);
        assert!(matches!(&c.rules[1].path, PathMatch::Regex(re) if re.is_match("/A/7")));
        let d = load(&base()).unwrap();
        assert!(d.rules.is_empty() && d.migration.mode == MigrationMode::Enforce && d.allowed_runs.is_none());
    }

    #[test]
    fn bad_rollout_settings_are_named() {
        assert_refused(&[
            ("rules", json!({"prefix": "/"}), "rules"),
            ("rules", json!([{"action": "public"}]), "rules[0]"),
            ("rules", json!([{"prefix": "/", "exact": "/", "action": "public"}]), "rules[0]"),
            ("rules", json!([{"prefix": "static", "action": "public"}]), "rules[0]"),
            ("rules", json!([{"regex": "(", "action": "public"}]), "rules[0].regex"),
            ("rules", json!([{"prefix": "/", "action": "allow"}]), "rules[0].action"),
            ("rules", json!([{"prefix": "/", "methods": [], "action": "public"}]), "rules[0].methods"),
            ("rules", json!([{"prefix": "/", "action": "public", "path": "/"}]), "rules[0].path"),
            ("migration", json!({"mode": "gradual"}), "migration.mode"),
            ("migration", json!({"mode": "parallel"}), "migration.legacy_cookies"),
            ("migration", json!({"mode": "canary", "legacy_cookies": ["a"]}), "migration.canary_percent"),
            (
                "migration",
                json!({"mode": "canary", "legacy_cookies": ["a"], "canary_percent": 101}),
                "migration.canary_percent",
            ),
            ("migration", json!({"mode": "parallel", "legacy_cookies": ["bad name"]}), "migration.legacy_cookies[0]"),
            ("allowed_runs", json!(["44444444-5"]), "allowed_runs[0]"),
            ("allowed_runs", json!("44444444-4"), "allowed_runs"),
            ("path_case", json!("ignore"), "path_case"),
            ("path_case", json!(true), "path_case"),
        ]);
    }

    #[test]
    fn what_is_wrong_is_told_by_kind() {
        let cases = [
            ("rules", json!([{"action": "public"}]), "rules[0]", ProblemKind::RulePathMissing),
            (
                "rules",
                json!([{"prefix": "/", "exact": "/", "action": "public"}]),
                "rules[0]",
                ProblemKind::RulePathTwice,
            ),
            ("rules", json!([{"prefix": "static", "action": "public"}]), "rules[0]", ProblemKind::RulePathShape),
            ("rules", json!([7]), "rules[0]", ProblemKind::MustBe("an object")),
            (
                "rules",
                json!([{"prefix": "/", "action": "allow"}]),
                "rules[0].action",
                ProblemKind::OneOf(&["enforce", "optional", "public"]),
            ),
            ("migration", json!({"mode": "parallel"}), "migration.legacy_cookies", ProblemKind::LegacyCookiesNeeded),
            (
                "migration",
                json!({"mode": "canary", "legacy_cookies": ["a"]}),
                "migration.canary_percent",
                ProblemKind::CanaryPercentNeeded,
            ),
            ("allowed_runs", json!(["44444444-5"]), "allowed_runs[0]", ProblemKind::BadRun(RunError::WrongCheckDigit)),
            ("allowed_runs", json!([44]), "allowed_runs[0]", ProblemKind::MustBe("a RUN such as 12345678-5")),
            ("path_case", json!("ignore"), "path_case", ProblemKind::OneOf(&["sensitive", "insensitive"])),
        ];
        assert_kinds(&cases);
        let err = load(&with("rules", json!([{"regex": "(", "action": "public"}]))).unwrap_err();
        assert!(matches!(kind_of(&err, "rules[0].regex"), Some(ProblemKind::BadRegex(_))), "{err}");
        assert!(err.to_string().contains("rules[0].regex: is not a valid regular expression ("), "{err}");
    }

    #[test]
    fn a_bad_rule_leaves_the_good_ones_named_and_the_message_lists_the_choices() {
        let err = load(&with("migration", json!({"mode": "gradual"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: migration.mode: must be enforce, parallel, canary or report_only"
        );
    }
}
