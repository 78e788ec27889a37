//! OpenID Connect as ClaveÚnica speaks it: the authorize URL, the token exchange, the JWKS,
//! ID token verification and userinfo. Requests are built as values and answers are parsed
//! from bytes; nothing here sends anything.

pub mod authorize;
pub mod id_token;
pub mod jwks;
pub mod token;
pub mod userinfo;

/// The longest provider answer the gate reads; a longer one is a provider fault.
pub const MAX_BODY_LEN: usize = 64 * 1024;
