//! OpenID Connect as ClaveÚnica speaks it: the authorize URL, the token exchange, the JWKS,
//! ID token verification and userinfo. Requests are built as values and answers are parsed
//! from bytes; nothing here sends anything.

use crate::primitives::secret::SecretString;

pub mod authorize;
pub mod id_token;
pub mod jwks;
pub mod token;
pub mod userinfo;

/// The longest provider answer the gate reads; a longer one is a provider fault.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// What the provider knows of this gate as its client, as the authorize URL and the token
/// request carry it. The configuration provides it; this layer sits below the configuration
/// and names only what it sends.
pub trait Registration {
    /// The client id registered with the provider.
    fn client_id(&self) -> &str;
    /// The client secret.
    fn client_secret(&self) -> &SecretString;
    /// The registered callback URL, sent verbatim.
    fn redirect_uri(&self) -> &str;
    /// The scope requested at the authorize endpoint.
    fn scope(&self) -> &str;
    /// Where browsers are sent to log in.
    fn authorization_endpoint(&self) -> &str;
}
