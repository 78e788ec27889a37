//! The token endpoint: exchanges an authorization code, once, for an access token and a
//! signed ID token (shaped by the ID-token test mode in force).

use serde_json::json;

use super::{oauth_error, App};
use crate::http::{Reply, Req};
use crate::modes::{ClientMode, Modes};
use crate::tokens::random_hex;

pub(super) fn token(app: &App, req: &Req, now: u64, modes: &Modes) -> Reply {
    let form_type = req
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(400, "invalid_request");
    }
    let p = req.form_params();
    let client_id = p.text("client_id");
    let disabled = modes.client == ClientMode::Disabled;
    let known = app.config.client(client_id).is_some_and(|c| p.text("client_secret") == c.secret);
    if disabled || !known {
        return oauth_error(400, "invalid_client");
    }
    if p.text("grant_type") != "authorization_code" {
        return oauth_error(400, "unsupported_grant_type");
    }
    let Some(grant) = app.state().take_code(p.text("code"), now) else {
        return oauth_error(400, "invalid_grant");
    };
    if grant.client_id != client_id {
        return oauth_error(400, "invalid_grant");
    }
    // The real service answers a redirect_uri mismatch as a client error,
    // indistinguishable from a wrong secret.
    if p.text("redirect_uri") != grant.redirect_uri {
        return oauth_error(400, "invalid_client");
    }
    let Ok(access_token) = random_hex(16) else {
        return oauth_error(500, "server_error");
    };
    let keys = app.keys().current;
    let id_token = match keys.id_token_as(modes, &app.config.issuer, &grant, &access_token, now) {
        Ok(t) => t,
        Err(_) => return oauth_error(500, "server_error"),
    };
    {
        let mut state = app.state();
        state.insert_token(access_token.clone(), grant.user, now);
        state.issued_id_token(&id_token);
    }
    Reply::json(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": crate::state::ACCESS_TOKEN_TTL_SECS,
            "id_token": id_token,
        }),
    )
    .no_store()
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jwt_simple::prelude::{RSAPublicKeyLike, VerificationOptions};
    use serde_json::json;

    use crate::endpoints::tests::{app, enc, error_of, exchange, get, id_token_parts, login, post_form, set, CB, NOW};
    use crate::endpoints::{route, TOKEN_PATH, USERINFO_PATH};
    use crate::state::CODE_TTL_SECS;
    use crate::tokens::IdTokenExtra;

    #[test]
    fn full_flow_and_single_use_code() {
        let app = app(None);
        let code = login(&app, Some("nonce-1"), NOW);
        assert_eq!(code.len(), 32);
        let reply = exchange(&app, &code, CB, NOW + 2);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("Cache-Control"), Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["expires_in"], 3600);
        let id_token = v["id_token"].as_str().unwrap();
        let opts = VerificationOptions {
            required_nonce: Some("nonce-1".into()),
            // The token's iat is the fixed test time, far in the past.
            artificial_time: Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW + 3)),
            ..Default::default()
        };
        let claims = app.keys().current.public_key().verify_token::<IdTokenExtra>(id_token, Some(opts)).unwrap();
        assert_eq!(claims.custom.auth_time, NOW);

        // Second use of the same code fails.
        assert_eq!(error_of(&exchange(&app, &code, CB, NOW + 3)), "invalid_grant");

        let access = v["access_token"].as_str().unwrap();
        let mut req = get(USERINFO_PATH, "");
        req.method = "POST".into();
        req.headers.push(("authorization".into(), format!("Bearer {access}")));
        let reply = route(&app, &req, NOW + 4);
        assert_eq!(reply.status, 200);
        let u: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(u["RolUnico"]["numero"], 44_444_444);
        assert_eq!(u["RolUnico"]["DV"], "4");
        assert_eq!(u["name"]["apellidos"][0], "De los Ríos");

        req.headers = vec![("authorization".into(), "Bearer nope".into())];
        let reply = route(&app, &req, NOW + 4);
        assert_eq!(reply.status, 401);
        assert_eq!(error_of(&reply), "invalid_token");
    }

    #[test]
    fn token_endpoint_errors() {
        let app = app(None);

        // Expired code.
        let code = login(&app, None, NOW);
        let reply = exchange(&app, &code, CB, NOW + CODE_TTL_SECS);
        assert_eq!((reply.status, error_of(&reply)), (400, "invalid_grant".into()));

        // Unknown code.
        assert_eq!(error_of(&exchange(&app, "0123", CB, NOW)), "invalid_grant");

        // Redirect URI differing from the one the code was issued for.
        let code = login(&app, None, NOW);
        let reply = exchange(&app, &code, "https://app.example.gob.cl/callback", NOW);
        assert_eq!(error_of(&reply), "invalid_client");

        // Wrong secret.
        let code = login(&app, None, NOW);
        let body = enc(&[
            ("client_id", "demo-client"),
            ("client_secret", "wrong"),
            ("redirect_uri", CB),
            ("grant_type", "authorization_code"),
            ("code", &code),
        ]);
        let reply = route(&app, &post_form(TOKEN_PATH, &body), NOW);
        assert_eq!(error_of(&reply), "invalid_client");

        // Wrong grant type.
        let body = enc(&[
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret"),
            ("redirect_uri", CB),
            ("grant_type", "password"),
            ("code", &code),
        ]);
        let reply = route(&app, &post_form(TOKEN_PATH, &body), NOW);
        assert_eq!(error_of(&reply), "unsupported_grant_type");

        // The code survived the rejected requests above and still works once.
        assert_eq!(exchange(&app, &code, CB, NOW).status, 200);
    }

    #[test]
    fn id_token_modes_break_one_thing_each() {
        let app = app(None);
        let kid = app.keys().current.kid.clone();
        let (h, c, sig) = id_token_parts(&app);
        assert_eq!((h["alg"].as_str(), h["kid"].as_str()), (Some("RS256"), Some(kid.as_str())));
        assert_eq!(c["nonce"], "nonce-1");
        assert!(!sig.is_empty());

        set(&app, r#"{"id_token": "alg_none"}"#);
        let (h, c, sig) = id_token_parts(&app);
        assert_eq!((h["alg"].as_str(), sig.as_str(), c["nonce"].as_str()), (Some("none"), "", Some("nonce-1")));

        set(&app, r#"{"id_token": "hs256_confusion"}"#);
        let (h, _, sig) = id_token_parts(&app);
        assert_eq!(h["alg"], "HS256");
        assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 32, "an HMAC-SHA256 tag");

        set(&app, r#"{"id_token": "unknown_kid"}"#);
        let (h, _, _) = id_token_parts(&app);
        assert_ne!(h["kid"].as_str(), Some(kid.as_str()));
        assert_eq!(h["kid"].as_str().map(str::len), Some(32));

        set(&app, r#"{"id_token": "crit"}"#);
        assert_eq!(id_token_parts(&app).0["crit"], json!(["exp_policy"]));
        set(&app, r#"{"id_token": "typ_at_jwt"}"#);
        assert_eq!(id_token_parts(&app).0["typ"], "at+jwt");
        set(&app, r#"{"id_token": "huge"}"#);
        assert!(id_token_parts(&app).1["padding"].as_str().unwrap().len() >= 100 * 1024);
        set(&app, r#"{"id_token": "wrong_nonce"}"#);
        assert_ne!(id_token_parts(&app).1["nonce"], "nonce-1");
        set(&app, r#"{"id_token": "wrong_audience"}"#);
        assert_eq!(id_token_parts(&app).1["aud"], "another-client");
        set(&app, r#"{"id_token": "expired"}"#);
        let c = id_token_parts(&app).1;
        assert!(c["exp"].as_u64().unwrap() < NOW);
    }

    #[test]
    fn clock_offsets_move_iat_and_exp_of_a_genuine_token() {
        let app = app(None);
        let c = id_token_parts(&app).1;
        assert_eq!((c["iat"].as_u64(), c["exp"].as_u64()), (Some(NOW), Some(NOW + 600)), "the defaults");
        set(&app, r#"{"iat_offset_s": 40, "exp_offset_s": -5}"#);
        let (h, c, _) = id_token_parts(&app);
        assert_eq!((c["iat"].as_u64(), c["exp"].as_u64()), (Some(NOW + 40), Some(NOW - 5)));
        assert_eq!((h["alg"].as_str(), c["nonce"].as_str()), (Some("RS256"), Some("nonce-1")), "otherwise genuine");
        let token = {
            let code = login(&app, Some("n"), NOW);
            let v: serde_json::Value = serde_json::from_slice(&exchange(&app, &code, CB, NOW).body).unwrap();
            v["id_token"].as_str().unwrap().to_string()
        };
        // Signed with the published key: only the times are off (a verifier with a generous
        // tolerance accepts it).
        let opts = VerificationOptions {
            artificial_time: Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW)),
            time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(60)),
            ..Default::default()
        };
        assert!(app.keys().current.public_key().verify_token::<IdTokenExtra>(&token, Some(opts)).is_ok());
        // A broken mode keeps the offsets too.
        set(&app, r#"{"id_token": "wrong_audience"}"#);
        assert_eq!(id_token_parts(&app).1["iat"].as_u64(), Some(NOW + 40));
    }

    #[test]
    fn manually_signed_tokens_verify_with_the_published_key() {
        // The raw RS256 signer must sign exactly as jwt-simple does, or the attack rows
        // would be refused for a bad signature instead of what they test.
        let app = app(None);
        set(&app, r#"{"id_token": "wrong_audience"}"#);
        let code = login(&app, Some("n"), NOW);
        let v: serde_json::Value = serde_json::from_slice(&exchange(&app, &code, CB, NOW).body).unwrap();
        let opts = VerificationOptions {
            artificial_time: Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW + 1)),
            ..Default::default()
        };
        let claims = app
            .keys()
            .current
            .public_key()
            .verify_token::<serde_json::Value>(v["id_token"].as_str().unwrap(), Some(opts))
            .unwrap();
        assert!(claims.audiences.is_some());
    }

    #[test]
    fn each_client_is_checked_on_its_own_at_authorize_and_at_token() {
        const CB_B: &str = "http://b.test:8000/claveunica/callback";
        let mut app = app(Some(CB));
        app.config.clients.push(crate::endpoints::Client {
            id: "client-b".into(),
            secret: "secret-b".into(),
            redirect_uri: Some(CB_B.into()),
            logout_uris: Vec::new(),
        });
        let authorize = |client: &str, redirect_uri: &str| {
            let body = enc(&[
                ("client_id", client),
                ("redirect_uri", redirect_uri),
                ("state", "s-1"),
                ("scope", crate::endpoints::authorize::REQUIRED_SCOPE),
                ("run", "44.444.444-4"),
                ("password", "testing"),
            ]);
            route(&app, &post_form(crate::endpoints::AUTHORIZE_PATH, &body), NOW)
        };
        let token = |client: &str, secret: &str, code: &str, redirect_uri: &str| {
            let body = enc(&[
                ("client_id", client),
                ("client_secret", secret),
                ("redirect_uri", redirect_uri),
                ("grant_type", "authorization_code"),
                ("code", code),
            ]);
            route(&app, &post_form(TOKEN_PATH, &body), NOW)
        };
        let code_of = |reply: crate::http::Reply| {
            assert_eq!(reply.status, 302, "{}", String::from_utf8_lossy(&reply.body));
            crate::endpoints::tests::location_params(&reply).text("code").to_string()
        };
        // Each client with its own redirect URI only: a client's URI under the other's id is
        // refused with the error page, never a redirect.
        for (client, uri) in [("client-b", CB), ("demo-client", CB_B), ("client-c", CB_B)] {
            let reply = authorize(client, uri);
            assert_eq!((reply.status, reply.header("Location")), (400, None), "{client} with {uri}");
        }
        // Client B logs in; its code is good for B only (A presenting it spends it, as any
        // misused code), and only with B's own secret.
        let code = code_of(authorize("client-b", CB_B));
        assert_eq!(error_of(&token("demo-client", "demo-secret", &code, CB_B)), "invalid_grant", "B's code for A");
        let code = code_of(authorize("client-b", CB_B));
        assert_eq!(error_of(&token("client-b", "demo-secret", &code, CB_B)), "invalid_client", "A's secret for B");
        let reply = token("client-b", "secret-b", &code, CB_B);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let claims = v["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], "client-b", "the ID token is for the client that logged in");
        // The first client is untouched by the second.
        let code = code_of(authorize("demo-client", CB));
        assert_eq!(error_of(&token("client-b", "secret-b", &code, CB)), "invalid_grant", "A's code for B");
        let code = code_of(authorize("demo-client", CB));
        assert_eq!(exchange(&app, &code, CB, NOW).status, 200);
    }
}
