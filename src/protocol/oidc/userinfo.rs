//! Userinfo: the RUN and names, validated into an [`Identity`].

use serde::Deserialize;
use serde_json::Value;

use crate::primitives::run::{Run, RunError};
use crate::protocol::session::{Identity, IdentityError};

/// Why a userinfo answer is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserinfoError {
    /// Not JSON, or not the RolUnico shape.
    Malformed(&'static str),
    /// `tipo` is not `RUN`.
    NotARun,
    /// The RUN is out of range or its check digit does not match.
    BadRun(RunError),
    /// Names or `sub` out of bounds.
    BadIdentity(IdentityError),
}

#[derive(Deserialize)]
struct Wire {
    sub: Option<Value>,
    #[serde(rename = "RolUnico")]
    rol_unico: Option<RolUnico>,
    name: Option<Name>,
}

#[derive(Deserialize)]
struct RolUnico {
    numero: Option<Value>,
    #[serde(rename = "DV")]
    dv: Option<String>,
    tipo: Option<String>,
}

#[derive(Deserialize)]
struct Name {
    #[serde(default)]
    nombres: Vec<String>,
    #[serde(default)]
    apellidos: Vec<String>,
}

/// `numero` arrives as a JSON number in the manual and as a string from some deployments.
fn numero(value: &Value) -> Result<u32, UserinfoError> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u32>().ok()
        }
        _ => None,
    };
    parsed.ok_or(UserinfoError::Malformed("RolUnico.numero is not a whole number"))
}

/// Parses and validates a userinfo answer.
pub fn parse(body: &[u8]) -> Result<Identity, UserinfoError> {
    let wire: Wire =
        serde_json::from_slice(body).map_err(|_| UserinfoError::Malformed("userinfo is not the expected JSON"))?;
    let rol = wire.rol_unico.ok_or(UserinfoError::Malformed("no RolUnico"))?;
    if rol.tipo.as_deref() != Some("RUN") {
        return Err(UserinfoError::NotARun);
    }
    let numero = numero(rol.numero.as_ref().ok_or(UserinfoError::Malformed("no RolUnico.numero"))?)?;
    let dv = rol.dv.as_deref().ok_or(UserinfoError::Malformed("no RolUnico.DV"))?;
    let mut dv_chars = dv.chars();
    let dv = match (dv_chars.next(), dv_chars.next()) {
        (Some(c), None) => c,
        _ => return Err(UserinfoError::BadRun(RunError::Malformed)),
    };
    let run = Run::new(numero, dv).map_err(UserinfoError::BadRun)?;
    let sub = match wire.sub {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(UserinfoError::Malformed("no sub")),
    };
    let name = wire.name.unwrap_or(Name { nombres: Vec::new(), apellidos: Vec::new() });
    Identity::new(run, name.nombres, name.apellidos, sub).map_err(UserinfoError::BadIdentity)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn the_manuals_example() {
        let id = parse(
            r#"{"sub":"1234567","RolUnico":{"DV":"5","numero":12345678,"tipo":"RUN"},
                "name":{"apellidos":["Del Río","Gonzalez"],"nombres":["María","Carmen"]}}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(id.run().plain(), "12345678-5");
        assert_eq!(id.nombres(), ["María", "Carmen"]);
        assert_eq!(id.apellidos(), ["Del Río", "Gonzalez"]);
        assert_eq!(id.sub(), "1234567");
    }

    #[test]
    fn numero_as_string_and_lowercase_k() {
        let id = parse(br#"{"sub":"1","RolUnico":{"DV":"k","numero":"12667869","tipo":"RUN"},"name":{"nombres":["A"],"apellidos":["B"]}}"#).unwrap();
        assert_eq!(id.run().plain(), "12667869-K");
    }

    #[test]
    fn refusals() {
        let case = |rol: &str| {
            parse(format!(r#"{{"sub":"1","RolUnico":{rol},"name":{{"nombres":[],"apellidos":[]}}}}"#).as_bytes())
        };
        assert!(matches!(case(r#"{"DV":"4","tipo":"RUN"}"#), Err(UserinfoError::Malformed(_))));
        assert!(matches!(case(r#"{"DV":"4","numero":null,"tipo":"RUN"}"#), Err(UserinfoError::Malformed(_))));
        assert!(matches!(case(r#"{"DV":"4","numero":-44444444,"tipo":"RUN"}"#), Err(UserinfoError::Malformed(_))));
        assert!(matches!(case(r#"{"DV":"4","numero":"44a","tipo":"RUN"}"#), Err(UserinfoError::Malformed(_))));
        assert!(matches!(case(r#"{"DV":"4","numero":4.4e7,"tipo":"RUN"}"#), Err(UserinfoError::Malformed(_))));
        assert_eq!(
            case(r#"{"DV":"5","numero":44444444,"tipo":"RUN"}"#),
            Err(UserinfoError::BadRun(RunError::WrongCheckDigit))
        );
        assert_eq!(case(r#"{"DV":"4","numero":44444444,"tipo":"DNI"}"#), Err(UserinfoError::NotARun));
        assert_eq!(
            case(r#"{"DV":"44","numero":44444444,"tipo":"RUN"}"#),
            Err(UserinfoError::BadRun(RunError::Malformed))
        );
        assert!(matches!(parse(b"<html>"), Err(UserinfoError::Malformed(_))));
        assert!(matches!(parse(br#"{"sub":"1"}"#), Err(UserinfoError::Malformed(_))));
        let long = format!(
            r#"{{"sub":"1","RolUnico":{{"DV":"4","numero":44444444,"tipo":"RUN"}},"name":{{"nombres":["{}"],"apellidos":[]}}}}"#,
            "a".repeat(100_000)
        );
        assert_eq!(parse(long.as_bytes()), Err(UserinfoError::BadIdentity(IdentityError::NamesTooLong)));
    }
}
