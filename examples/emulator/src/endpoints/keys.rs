//! The published keys: the JWKS (the signing key and any older ones still honoured) and
//! the discovery document that points relying parties at every endpoint.

use serde_json::json;

use super::{Config, AUTHORIZE_PATH, JWKS_PATH, LOGOUT_PATH, TOKEN_PATH, USERINFO_PATH};
use crate::tokens::Keys;

/// The key that signs, and the older keys the JWKS still publishes.
#[derive(Clone)]
pub struct KeySet {
    pub current: Keys,
    pub older: Vec<Keys>,
}

impl KeySet {
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = std::iter::once(&self.current).chain(&self.older).map(Keys::jwk).collect();
        json!({ "keys": keys })
    }
}

pub fn discovery(config: &Config) -> serde_json::Value {
    let o = &config.origin;
    json!({
        "issuer": config.issuer,
        "authorization_endpoint": format!("{o}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{o}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{o}{USERINFO_PATH}"),
        "jwks_uri": format!("{o}{JWKS_PATH}"),
        "end_session_endpoint": format!("{o}{LOGOUT_PATH}"),
        "scopes_supported": ["openid", "run", "name"],
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "subject_types_supported": ["public"],
    })
}

#[cfg(test)]
mod tests {
    use crate::endpoints::tests::{app, get, NOW};
    use crate::endpoints::{route, DISCOVERY_PATH};

    #[test]
    fn discovery_points_at_every_endpoint() {
        let app = app(None);
        let reply = route(&app, &get(DISCOVERY_PATH, ""), NOW);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["token_endpoint"], "http://127.0.0.1:8900/openid/token/");
        assert_eq!(v["end_session_endpoint"], "http://127.0.0.1:8900/api/v1/accounts/app/logout");
    }
}
