//! The userinfo endpoint: the logged-in person's RUN and names for a bearer access token,
//! genuine or, in a test mode, wrong in one precise way.

use serde_json::json;

use super::{oauth_error, App};
use crate::http::{Reply, Req};
use crate::modes::UserinfoMode;
use crate::users::User;

fn bearer_token(req: &Req) -> Option<&str> {
    let (scheme, token) = req.header("authorization")?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub(super) fn userinfo(app: &App, req: &Req, now: u64, mode: UserinfoMode) -> Reply {
    let user = bearer_token(req).and_then(|t| app.state().token_user(t, now));
    match user {
        Some(user) => {
            Reply::new(200, "application/json; charset=utf-8", userinfo_body(user, app.config.numero_as_string, mode))
                .no_store()
        }
        None => {
            let mut reply = oauth_error(401, "invalid_token");
            reply.headers.push(("WWW-Authenticate", "Bearer error=\"invalid_token\"".to_string()));
            reply
        }
    }
}

pub fn userinfo_json(user: &User, numero_as_string: bool) -> serde_json::Value {
    let numero = if numero_as_string { json!(user.numero.to_string()) } else { json!(user.numero) };
    json!({
        "sub": user.sub,
        "RolUnico": { "DV": user.dv.to_string(), "numero": numero, "tipo": "RUN" },
        "name": { "apellidos": user.apellidos, "nombres": user.nombres },
    })
}

/// Userinfo's body in a test mode: genuine, or wrong in one precise way.
pub fn userinfo_body(user: &User, numero_as_string: bool, mode: UserinfoMode) -> Vec<u8> {
    let mut v = userinfo_json(user, numero_as_string);
    let rol = &mut v["RolUnico"];
    match mode {
        UserinfoMode::Normal => {}
        UserinfoMode::NumeroMissing => {
            if let Some(o) = rol.as_object_mut() {
                o.remove("numero");
            }
        }
        UserinfoMode::NumeroNull => rol["numero"] = serde_json::Value::Null,
        UserinfoMode::NumeroNegative => rol["numero"] = json!(-i64::from(user.numero)),
        UserinfoMode::NumeroText => rol["numero"] = json!("cuarenta y cuatro millones"),
        UserinfoMode::WrongDv => {
            let wrong = if user.dv == '0' { "1" } else { "0" };
            rol["DV"] = json!(wrong);
        }
        UserinfoMode::TipoDni => rol["tipo"] = json!("DNI"),
        UserinfoMode::Names100k => v["name"]["nombres"] = json!(["Ñ".repeat(50 * 1024)]),
        UserinfoMode::InvalidUtf8 => {
            // Valid JSON structure, with bytes that are not UTF-8 inside a name.
            const MARKER: &str = "INVALID_UTF8";
            v["name"]["nombres"] = json!([MARKER]);
            let text = v.to_string();
            let (before, after) = text.split_once(MARKER).unwrap_or((&text, ""));
            let mut body = before.as_bytes().to_vec();
            body.extend_from_slice(b"Mar\xff\xfea");
            body.extend_from_slice(after.as_bytes());
            return body;
        }
    }
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::USERS;

    #[test]
    fn numero_can_be_a_string() {
        let v = userinfo_json(&USERS[1], true);
        assert_eq!(v["RolUnico"]["numero"], "55555555");
        assert_eq!(v["name"]["apellidos"].as_array().map(Vec::len), Some(1));
    }

    fn userinfo_of(mode: UserinfoMode) -> Vec<u8> {
        userinfo_body(&USERS[0], false, mode)
    }

    #[test]
    fn userinfo_modes() {
        let v = |mode| serde_json::from_slice::<serde_json::Value>(&userinfo_of(mode)).unwrap();
        assert_eq!(v(UserinfoMode::Normal)["RolUnico"]["numero"], 44_444_444);
        assert!(v(UserinfoMode::NumeroMissing)["RolUnico"].get("numero").is_none());
        assert!(v(UserinfoMode::NumeroNull)["RolUnico"]["numero"].is_null());
        assert_eq!(v(UserinfoMode::NumeroNegative)["RolUnico"]["numero"], -44_444_444);
        assert!(v(UserinfoMode::NumeroText)["RolUnico"]["numero"].is_string());
        assert_eq!(v(UserinfoMode::WrongDv)["RolUnico"]["DV"], "0");
        assert_eq!(v(UserinfoMode::TipoDni)["RolUnico"]["tipo"], "DNI");
        assert!(userinfo_of(UserinfoMode::Names100k).len() >= 100 * 1024);
        let bad = userinfo_of(UserinfoMode::InvalidUtf8);
        assert!(std::str::from_utf8(&bad).is_err());
        assert!(bad.windows(2).any(|w| w == [0xff, 0xfe]));
    }
}
