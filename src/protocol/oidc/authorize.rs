//! The authorization request: where a browser without a session is sent.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::protocol::flow::Flow;
use crate::protocol::oidc::Registration;

/// Query values are encoded with `%20` for spaces, the way ClaveÚnica's manual writes the
/// scope, rather than the `+` of HTML forms.
const QUERY_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The authorize URL for a login attempt.
#[must_use]
pub fn authorize_url(client: &impl Registration, flow: &Flow) -> String {
    let base = client.authorization_endpoint();
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in [
        ("client_id", client.client_id()),
        ("response_type", "code"),
        ("scope", client.scope()),
        ("redirect_uri", client.redirect_uri()),
        ("state", flow.state()),
        ("nonce", flow.nonce()),
    ] {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.extend(utf8_percent_encode(v, QUERY_SET));
        sep = '&';
    }
    url
}
