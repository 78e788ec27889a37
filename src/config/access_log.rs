//! The access register section: how the person is named in the register of accesses that
//! Decreto 9 asks a service to keep (who, and when, in UTC). By default a masked RUN, so the
//! proxy's access log holds no full RUN; a keyed hash (the same person, the same value, which
//! only the key's holder can recompute) or the full RUN only when the agency says so.

use super::error::ProblemKind;
use super::reader::Reader;
use crate::primitives::run::Run;
use crate::primitives::secret::SecretString;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["access_log"];

/// The fewest bytes a hash key may have: shorter, and the RUNs (a small space) could be
/// hashed by anyone who guessed it.
const MIN_HASH_KEY_LEN: usize = 16;

/// How the register names the person.
#[derive(Debug, Clone, Default)]
pub enum AccessSubject {
    /// The RUN with all but its last digits and check digit hidden: `*****444-4`.
    #[default]
    Masked,
    /// HMAC-SHA256 of the RUN (`44444444-4`) under the agency's key, its first 16 bytes in hex.
    Hashed(SecretString),
    /// The full RUN, `44444444-4`.
    Full,
}

impl AccessSubject {
    /// The name of the setting, as the document spells it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            AccessSubject::Masked => "masked",
            AccessSubject::Hashed(_) => "hashed",
            AccessSubject::Full => "full",
        }
    }

    /// The register's name for the person with this RUN.
    #[must_use]
    pub fn name(&self, run: &Run) -> String {
        match self {
            AccessSubject::Masked => run.masked(),
            AccessSubject::Full => run.plain(),
            AccessSubject::Hashed(key) => {
                use hmac::{Hmac, Mac};
                let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose().as_bytes()) else {
                    // HMAC takes a key of any length; kept total rather than trusted.
                    return run.masked();
                };
                mac.update(run.plain().as_bytes());
                mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect()
            }
        }
    }
}

/// Reads the section: `{"run": "masked" | "hashed" | "full", "hash_key_env": "NAME"}`.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> AccessSubject {
    let Some(mut s) = r.section("access_log", "access_log.", &["run", "hash_key_env"]) else {
        return AccessSubject::default();
    };
    let key_env = s.string("hash_key_env");
    let subject = match s.string("run").as_deref() {
        None | Some("masked") => AccessSubject::Masked,
        Some("full") => AccessSubject::Full,
        Some("hashed") => match key_env.as_deref().map(|name| (name, env(name))) {
            Some((_, Some(key))) if key.len() >= MIN_HASH_KEY_LEN => AccessSubject::Hashed(SecretString::new(key)),
            Some((_, Some(_))) => {
                s.problem("hash_key_env", ProblemKind::MustBe("a variable holding at least 16 bytes"));
                AccessSubject::Masked
            }
            Some((name, None)) => {
                s.problem("hash_key_env", ProblemKind::EnvUnset(name.to_string()));
                AccessSubject::Masked
            }
            None => {
                s.problem("hash_key_env", ProblemKind::Missing);
                AccessSubject::Masked
            }
        },
        Some(_) => {
            s.problem("run", ProblemKind::MustBe("\"masked\", \"hashed\" or \"full\""));
            AccessSubject::Masked
        }
    };
    if key_env.is_some() && !matches!(subject, AccessSubject::Hashed(_)) && !s.named("hash_key_env") {
        s.problem("hash_key_env", ProblemKind::MustBe("given only with \"run\": \"hashed\""));
    }
    r.absorb(s);
    subject
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_refused, base, load, with};
    use super::super::Config;
    use super::*;

    #[test]
    fn the_register_names_a_masked_run_unless_told_otherwise() {
        let run = Run::parse("44.444.444-4").unwrap();
        let subject = |v: serde_json::Value| load(&v).unwrap().access_log;
        assert_eq!(subject(base()).name(&run), "*****444-4");
        assert_eq!(subject(with("access_log", json!({"run": "masked"}))).name(&run), "*****444-4");
        assert_eq!(subject(with("access_log", json!({"run": "full"}))).name(&run), "44444444-4");
        let v = with("access_log", json!({"run": "hashed", "hash_key_env": "CU_REGISTER_KEY"}));
        let hashed = |key: &str| {
            let env = |n: &str| (n == "CU_REGISTER_KEY").then(|| key.to_string());
            Config::from_json(v.to_string().as_bytes(), &env).unwrap().access_log
        };
        let a = hashed("0123456789abcdef-one").name(&run);
        assert_eq!(a.len(), 32, "{a}");
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()) && !a.contains("4444"), "{a}");
        // The same person under the same key, the same value; another person or key, another.
        assert_eq!(hashed("0123456789abcdef-one").name(&run), a);
        assert_ne!(hashed("0123456789abcdef-two").name(&run), a);
        assert_ne!(hashed("0123456789abcdef-one").name(&Run::parse("55555555-5").unwrap()), a);
        assert!(!format!("{:?}", hashed("0123456789abcdef-one")).contains("0123456789"));
    }

    #[test]
    fn a_wrong_register_setting_is_named() {
        assert_refused(&[
            ("access_log", json!({"run": "all"}), "access_log.run"),
            ("access_log", json!({"run": "hashed"}), "access_log.hash_key_env"),
            ("access_log", json!({"run": "hashed", "hash_key_env": "NOT_SET_ANYWHERE"}), "access_log.hash_key_env"),
            ("access_log", json!({"run": "full", "hash_key_env": "X"}), "access_log.hash_key_env"),
            ("access_log", json!({"colour": "blue"}), "access_log.colour"),
            ("access_log", json!("masked"), "access_log"),
        ]);
    }
}
