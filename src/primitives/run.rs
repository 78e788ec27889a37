//! The RUN (Rol Único Nacional): parsing, the módulo 11 check digit, and the formats legacy
//! applications expect. A RUN is personal data, so `Debug` masks it.

use core::fmt;

/// The largest RUN body accepted. Real RUNs are below 100 million; the margin is generous
/// without letting a u32 overflow in arithmetic on it.
const MAX_NUMERO: u32 = 999_999_999;

/// A RUN whose check digit has been verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    numero: u32,
    dv: char,
}

/// Why a text or a pair of fields is not a valid RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// Empty, or characters other than digits, dots, one dash and a final K.
    Malformed,
    /// Zero, or more digits than any RUN has.
    OutOfRange,
    /// The check digit does not match the body.
    WrongCheckDigit,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunError::Malformed => "malformed RUN",
            RunError::OutOfRange => "RUN number out of range",
            RunError::WrongCheckDigit => "RUN check digit does not match",
        })
    }
}

/// The módulo 11 check digit of a RUN body: `0`-`9` or `K`.
#[must_use]
pub fn check_digit(numero: u32) -> char {
    let mut sum = 0u32;
    let mut factor = 2u32;
    let mut n = numero;
    while n > 0 {
        sum += (n % 10) * factor;
        n /= 10;
        factor = if factor == 7 { 2 } else { factor + 1 };
    }
    match 11 - (sum % 11) {
        11 => '0',
        10 => 'K',
        r => char::from_digit(r, 10).unwrap_or('0'),
    }
}

impl Run {
    /// A RUN from its body and check digit (`k` is taken as `K`), as userinfo gives them.
    pub fn new(numero: u32, dv: char) -> Result<Self, RunError> {
        if numero == 0 || numero > MAX_NUMERO {
            return Err(RunError::OutOfRange);
        }
        let dv = dv.to_ascii_uppercase();
        if !(dv.is_ascii_digit() || dv == 'K') {
            return Err(RunError::Malformed);
        }
        if check_digit(numero) != dv {
            return Err(RunError::WrongCheckDigit);
        }
        Ok(Self { numero, dv })
    }

    /// Parses `12345678-5`, `12.345.678-5`, `123456785` or `12345678-k`.
    pub fn parse(text: &str) -> Result<Self, RunError> {
        let text = text.trim();
        let (body, dv) = match text.rsplit_once('-') {
            Some((body, dv)) => (body, dv),
            None => {
                let mut chars = text.chars();
                let dv = chars.next_back().ok_or(RunError::Malformed)?;
                return Self::parse_parts(chars.as_str(), dv);
            }
        };
        let mut dv_chars = dv.chars();
        match (dv_chars.next(), dv_chars.next()) {
            (Some(d), None) => Self::parse_parts(body, d),
            _ => Err(RunError::Malformed),
        }
    }

    fn parse_parts(body: &str, dv: char) -> Result<Self, RunError> {
        let digits: String = body.chars().filter(|c| *c != '.').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !dotted_ok(body) {
            return Err(RunError::Malformed);
        }
        if digits.trim_start_matches('0').len() > 9 {
            return Err(RunError::OutOfRange);
        }
        let numero = digits.parse::<u32>().map_err(|_| RunError::OutOfRange)?;
        Self::new(numero, dv)
    }

    /// The body, without check digit.
    #[must_use]
    pub fn numero(&self) -> u32 {
        self.numero
    }

    /// The check digit, `0`-`9` or `K`.
    #[must_use]
    pub fn dv(&self) -> char {
        self.dv
    }

    /// `12345678-5`: the format ClaveÚnica and most applications use.
    #[must_use]
    pub fn plain(&self) -> String {
        format!("{}-{}", self.numero, self.dv)
    }

    /// `12.345.678-5`: the format printed on identity cards.
    #[must_use]
    pub fn dotted(&self) -> String {
        let digits = self.numero.to_string();
        let mut out = String::with_capacity(digits.len() + 4);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push('.');
            }
            out.push(c);
        }
        out.push('-');
        out.push(self.dv);
        out
    }

    /// `*****678-5`: enough for an operator to tell log lines apart, not enough to identify a
    /// person.
    #[must_use]
    pub fn masked(&self) -> String {
        let digits = self.numero.to_string();
        let keep = digits.len().min(3);
        let hidden = digits.len() - keep;
        format!("{}{}-{}", "*".repeat(hidden), &digits[hidden..], self.dv)
    }
}

/// Dots, when present, must group the digits by thousands (`12.345.678`).
fn dotted_ok(body: &str) -> bool {
    if !body.contains('.') {
        return true;
    }
    let groups: Vec<&str> = body.split('.').collect();
    groups.iter().enumerate().all(|(i, g)| if i == 0 { (1..=3).contains(&g.len()) } else { g.len() == 3 })
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Run({})", self.masked())
    }
}

/// `text` with everything RUN-shaped masked as [`Run::masked`] does (`*****444-4`), for log
/// lines that carry outside text (a path, a query, a provider's words). RUN-shaped: at least
/// six digits, dots between them allowed, then a dash and a check digit or K
/// (`44.444.444-4`, `4444444-K`); or at least eight digits with no dash, the last taken as the
/// check digit (`444444444`). Dots and dashes may be percent-encoded (`%2E`, `%2D`). The check
/// digit is not verified: a typo'd RUN is still a person's.
#[must_use]
pub fn mask_runs(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    if bytes.iter().filter(|b| b.is_ascii_digit()).count() < 7 {
        return text.into();
    }
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let escape = |i: usize, hex: u8| at(i) == b'%' && at(i + 1) == b'2' && at(i + 2).eq_ignore_ascii_case(&hex);
    // The length of a separator (`.` or `%2E`; `-` or `%2D`) at `i`, or 0.
    let dot = |i: usize| {
        if at(i) == b'.' {
            1
        } else if escape(i, b'E') {
            3
        } else {
            0
        }
    };
    let dash = |i: usize| {
        if at(i) == b'-' {
            1
        } else if escape(i, b'D') {
            3
        } else {
            0
        }
    };
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        if !at(i).is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::new();
        loop {
            if at(i).is_ascii_digit() {
                digits.push(at(i));
                i += 1;
            } else if dot(i) > 0 && at(i + dot(i)).is_ascii_digit() {
                i += dot(i);
            } else {
                break;
            }
        }
        let check = |c: u8| c.is_ascii_digit() || c.eq_ignore_ascii_case(&b'k');
        let (body, dv, end) = if dash(i) > 0 && check(at(i + dash(i))) && digits.len() >= 6 {
            (&digits[..], at(i + dash(i)), i + dash(i) + 1)
        } else if at(i).eq_ignore_ascii_case(&b'k') && digits.len() >= 6 {
            (&digits[..], at(i), i + 1)
        } else if let (Some((&dv, body)), true) = (digits.split_last(), digits.len() >= 8) {
            (body, dv, i)
        } else {
            continue;
        };
        let keep = body.len().saturating_sub(3);
        out.push_str(text.get(copied..start).unwrap_or_default());
        out.push_str(&"*".repeat(keep));
        out.extend(body.iter().skip(keep).map(|&b| char::from(b)));
        out.push('-');
        out.push(char::from(dv.to_ascii_uppercase()));
        copied = end;
        i = end;
    }
    if copied == 0 {
        return text.into();
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out.into()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn check_digits_from_the_manual() {
        for (numero, dv) in [
            (12_345_678, '5'),
            (12_667_869, 'K'),
            (44_444_444, '4'),
            (55_555_555, '5'),
            (88_888_888, '8'),
            (99_999_999, '9'),
            // A check digit of 0: 11 - (sum mod 11) = 11.
            (1_000_013, '0'),
            (6, 'K'),
        ] {
            assert_eq!(check_digit(numero), dv, "numero {numero}");
        }
    }

    #[test]
    fn parses_every_format_legacy_apps_use() {
        let want = Run::new(12_345_678, '5').unwrap();
        for text in ["12345678-5", "12.345.678-5", "123456785", " 12345678-5 ", "012345678-5"] {
            assert_eq!(Run::parse(text), Ok(want), "{text}");
        }
        let k = Run::parse("12667869-k").unwrap();
        assert_eq!(k.dv(), 'K');
        assert_eq!(k.plain(), "12667869-K");
    }

    #[test]
    fn refuses_junk() {
        for (text, err) in [
            ("", RunError::Malformed),
            ("-", RunError::Malformed),
            ("abc-5", RunError::Malformed),
            ("12345678-55", RunError::Malformed),
            ("12345678-X", RunError::Malformed),
            ("1.2345.678-5", RunError::Malformed),
            ("12,345,678-5", RunError::Malformed),
            ("12345678 -5", RunError::Malformed),
            ("+12345678-5", RunError::Malformed),
            ("12345678-4", RunError::WrongCheckDigit),
            ("12667869-0", RunError::WrongCheckDigit),
            ("0-0", RunError::OutOfRange),
            ("99999999999999999999-1", RunError::OutOfRange),
        ] {
            assert_eq!(Run::parse(text), Err(err), "{text:?}");
        }
        assert_eq!(Run::new(0, '0'), Err(RunError::OutOfRange));
        assert_eq!(Run::new(44_444_444, '!'), Err(RunError::Malformed));
    }

    #[test]
    fn formats() {
        let r = Run::new(12_345_678, '5').unwrap();
        assert_eq!(r.plain(), "12345678-5");
        assert_eq!(r.dotted(), "12.345.678-5");
        assert_eq!(Run::new(1_000_013, '0').unwrap().dotted(), "1.000.013-0");
        assert_eq!(Run::new(6, 'k').unwrap().dotted(), "6-K");
        assert_eq!(r.masked(), "*****678-5");
        assert_eq!(format!("{r:?}"), "Run(*****678-5)");
    }

    #[test]
    fn run_shaped_text_is_masked() {
        for (text, want) in [
            ("GET /perfil/44.444.444-4", "GET /perfil/*****444-4"),
            ("GET /perfil/44444444-4", "GET /perfil/*****444-4"),
            ("GET /perfil/444444444", "GET /perfil/*****444-4"),
            ("run=4444444-k&x=1", "run=****444-K&x=1"),
            ("/a/12345678K/b", "/a/*****678-K/b"),
            ("/p?rut=44%2E444%2E444%2D4", "/p?rut=*****444-4"),
            ("/p?rut=44%2e444%2e444%2d4", "/p?rut=*****444-4"),
            ("/u44444444-4x", "/u*****444-4x"),
            ("a 444.444-4 b", "a ***444-4 b"),
            ("two 11111111-1 and 22.222.222-2", "two *****111-1 and *****222-2"),
            ("/ñ/44444444-4/ñ", "/ñ/*****444-4/ñ"),
        ] {
            assert_eq!(mask_runs(text), want, "{text}");
        }
        // Not RUN-shaped: short numbers, ordinary ids, a reference, dates.
        for text in ["status=503 ref=5f1c09ab", "/tramites/certificado?id=7", "/a/1234567", "2026-12-01", "/v1.2.3"] {
            assert!(matches!(mask_runs(text), std::borrow::Cow::Borrowed(_)), "{text}");
        }
    }
}
