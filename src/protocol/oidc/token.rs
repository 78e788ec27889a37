//! The token exchange: the request body (client_secret_post) and the answer.

use serde::Deserialize;

use crate::primitives::secret::SecretString;
use crate::protocol::oidc::Registration;

/// The form body of the token request.
#[must_use]
pub fn request_body(client: &impl Registration, code: &str, state: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client.client_id())
        .append_pair("client_secret", client.client_secret().expose())
        .append_pair("redirect_uri", client.redirect_uri())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("state", state)
        .finish()
}

/// A successful token answer.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    /// The bearer token for userinfo.
    pub access_token: SecretString,
    /// The ID token, still unverified.
    pub id_token: String,
}

/// How the token endpoint answered, when it was not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `invalid_grant`: the code expired or was used already. The person should log in again.
    InvalidGrant,
    /// An OAuth error other than `invalid_grant` (`invalid_client` covers a wrong secret and a
    /// wrong redirect_uri alike).
    Rejected(String),
    /// Not the JSON a token endpoint sends.
    Malformed(&'static str),
}

#[derive(Deserialize)]
struct Wire {
    access_token: Option<String>,
    token_type: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

/// Parses a token endpoint answer with its HTTP status.
pub fn parse(status: u16, body: &[u8]) -> Result<TokenResponse, TokenError> {
    let wire: Wire = serde_json::from_slice(body).map_err(|_| TokenError::Malformed("token answer is not JSON"))?;
    if status != 200 {
        return Err(match wire.error.as_deref() {
            Some("invalid_grant") => TokenError::InvalidGrant,
            Some(e) => TokenError::Rejected(e.chars().filter(char::is_ascii_graphic).take(64).collect()),
            None => TokenError::Malformed("token endpoint failed without an error code"),
        });
    }
    if !wire.token_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(TokenError::Malformed("token_type is not bearer"));
    }
    let access_token = wire.access_token.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
    match (access_token, wire.id_token) {
        (Some(a), Some(i)) => Ok(TokenResponse { access_token: SecretString::new(a), id_token: i }),
        (None, _) => Err(TokenError::Malformed("no usable access_token")),
        (_, None) => Err(TokenError::Malformed("no id_token")),
    }
}
