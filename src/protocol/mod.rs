//! The protocol: ClaveÚnica's OpenID Connect as values and parsers (`oidc`), a login attempt
//! in flight (`flow`) and the session it ends in (`session`). Requests are built as values and
//! answers read from bytes; nothing here sends anything or knows the host.

pub mod assertion;
pub mod flow;
pub mod oidc;
pub mod session;
