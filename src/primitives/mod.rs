//! Primitives: the values everything above is built from, with no knowledge of OpenID Connect
//! or HTTP. The RUN and its check digit, secrets that cannot leak into a log, and the sealed
//! envelope behind every cookie the gate sets.

pub mod pseudonym;
pub mod run;
pub mod seal;
pub mod secret;
