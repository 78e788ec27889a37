//! The sandbox people the emulator knows, and parsing of the RUN a person types in.
//!
//! Like the real sandbox, only the four published test RUNs get in, all with the
//! password `testing`. Their names carry accents and one has a single surname on
//! purpose: those are the cases that break naive header encodings downstream.

/// The password every sandbox user shares, as in the real sandbox.
pub const SANDBOX_PASSWORD: &str = "testing";

/// One person as userinfo describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Internal identifier; deliberately not the RUN, because the real service
    /// sometimes sends an internal number and relying parties must not key on it.
    pub sub: &'static str,
    pub numero: u32,
    pub dv: char,
    pub nombres: &'static [&'static str],
    pub apellidos: &'static [&'static str],
}

impl User {
    /// The RUN in the usual printed form, e.g. `44.444.444-4`.
    pub fn display_run(&self) -> String {
        let digits = self.numero.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push('.');
            }
            grouped.push(c);
        }
        format!("{grouped}-{}", self.dv)
    }
}

pub const USERS: &[User] = &[
    User {
        sub: "2594",
        numero: 44_444_444,
        dv: '4',
        nombres: &["María", "Carmen"],
        apellidos: &["De los Ríos", "Núñez"],
    },
    User { sub: "3187", numero: 55_555_555, dv: '5', nombres: &["José"], apellidos: &["Peña"] },
    User { sub: "4421", numero: 88_888_888, dv: '8', nombres: &["Ana", "Sofía"], apellidos: &["González", "Muñoz"] },
    User { sub: "5063", numero: 99_999_999, dv: '9', nombres: &["Pedro"], apellidos: &["Ñancupil", "Zúñiga"] },
];

/// Módulo 11 check digit of a RUN body.
pub fn check_digit(numero: u32) -> char {
    let mut sum = 0u32;
    let mut factor = 2u32;
    let mut rest = numero;
    while rest > 0 {
        sum += (rest % 10) * factor;
        rest /= 10;
        factor = if factor == 7 { 2 } else { factor + 1 };
    }
    match 11 - (sum % 11) {
        11 => '0',
        10 => 'K',
        r => char::from_digit(r, 10).unwrap_or('?'),
    }
}

/// Parses a RUN as people type it (`44444444-4`, `44.444.444-4`, `444444444`,
/// lowercase `k`, stray spaces) into its body and upper-case check digit.
/// Returns `None` when the text is not a RUN or the check digit is wrong.
pub fn parse_run(input: &str) -> Option<(u32, char)> {
    let cleaned: Vec<char> =
        input.chars().filter(|c| !matches!(c, '.' | '-' | ' ' | '\t')).map(|c| c.to_ascii_uppercase()).collect();
    let (dv, body) = cleaned.split_last()?;
    if body.is_empty() || body.len() > 10 || !body.iter().all(char::is_ascii_digit) {
        return None;
    }
    let body: String = body.iter().collect();
    let numero: u32 = body.parse().ok()?;
    if numero == 0 || check_digit(numero) != *dv {
        return None;
    }
    Some((numero, *dv))
}

/// The sandbox user behind the typed RUN and password, if both are right.
pub fn authenticate(run: &str, password: &str) -> Option<&'static User> {
    let (numero, dv) = parse_run(run)?;
    if password != SANDBOX_PASSWORD {
        return None;
    }
    USERS.iter().find(|u| u.numero == numero && u.dv == dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_match_the_manual() {
        assert_eq!(check_digit(12_345_678), '5');
        assert_eq!(check_digit(12_667_869), 'K');
        for u in USERS {
            assert_eq!(check_digit(u.numero), u.dv, "{}", u.numero);
        }
    }

    #[test]
    fn run_formats_are_accepted() {
        for s in ["44444444-4", "44.444.444-4", "444444444", " 44.444.444 - 4 ", "0044444444-4"] {
            assert_eq!(parse_run(s), Some((44_444_444, '4')), "{s:?}");
        }
        assert_eq!(parse_run("12.667.869-k"), Some((12_667_869, 'K')));
        assert_eq!(parse_run("12667869K"), Some((12_667_869, 'K')));
    }

    #[test]
    fn bad_runs_are_rejected() {
        for s in ["", "-", "4", "44444444-5", "4444a444-4", "44444444-", "99999999999999999999-9", "0-0", "ñ"] {
            assert_eq!(parse_run(s), None, "{s:?}");
        }
    }

    #[test]
    fn only_sandbox_users_with_the_sandbox_password_get_in() {
        let user = authenticate("44.444.444-4", "testing");
        assert_eq!(user.map(|u| u.sub), Some("2594"));
        assert!(authenticate("44.444.444-4", "Testing").is_none());
        assert!(authenticate("12.345.678-5", "testing").is_none());
        assert_eq!(authenticate("99999999-9", "testing").map(|u| u.apellidos), Some(&["Ñancupil", "Zúñiga"][..]));
    }

    #[test]
    fn runs_print_grouped() {
        assert_eq!(USERS[0].display_run(), "44.444.444-4");
    }
}
