//! ClaveÚnica Gate's core: ClaveÚnica OpenID Connect login in front of a legacy web
//! application, as a state machine that two host adapters drive.
//!
//! # The contract
//!
//! This crate does no I/O. It never reads a clock, never draws random bytes by itself, never
//! opens a socket and knows nothing of proxy-wasm or WASI (its manifest has neither). It takes
//! facts (a request's method, path and headers, the current time, random bytes, the answers of
//! the calls it asked for, the application's answer) and returns decisions: forward the request
//! with these header changes, answer it with this response, or make this call and resume me
//! with its answer. Every behaviour both hosts share is decided here once, tested natively and
//! again compiled to wasm, and carried out verbatim by the adapters: `envoy/` (Envoy and Istio,
//! proxy-wasm) and `nginx-unit/` (NGINX Unit, a `wasi:http/proxy` component).
//!
//! # How an adapter drives the core
//!
//! 1. At configuration time, read the document with the host's own reader:
//!    [`config::Config::for_envoy`] (Envoy's JSON or `google.protobuf.Struct` bytes, plus
//!    `cluster`) or [`config::Config::for_unit`] (a JSON file, plus `upstream`), and build one
//!    [`gate::Gate`]: with [`gate::Gate::with_store`] over a [`gate::SharedStore`] where the
//!    host's workers share one (so a login attempt makes one token call whichever worker
//!    answers its callback), else with [`gate::Gate::new`]. A configuration error refuses the
//!    load and names every problem. If no configuration is loaded, answer every request with
//!    [`gate::fail_closed`] (`HostFailure::NotConfigured`).
//! 2. When a request's headers arrive, call [`gate::Gate::on_request`] with the request (every
//!    header, forged ones included), the current time and an entropy source, and apply the
//!    [`gate::Decision`]:
//!    - `Forward`: remove every header in `remove`, set every header in `set` (replacing all
//!      copies), apply `cookie`, send the request on, and keep `upstream`;
//!    - `Respond`: send the response;
//!    - `Call`: log its `log` line if any, send its `request` to the provider; when the
//!      answer (or failure) arrives, call
//!      [`gate::Gate::on_call_response`] with its `pending` continuation and apply the next
//!      decision. A login takes up to three calls in a row (token, JWKS when a key is unknown,
//!      userinfo).
//! 3. If the request has trailers, remove the ones [`gate::Gate::on_request_trailers`] names.
//! 4. When the application answers, call [`gate::Gate::on_upstream_response`] with the kept
//!    `upstream` and apply the [`gate::AnswerChange`]: set its `set` headers (replacing the
//!    application's copies) and add its `add` headers, or send its response instead of the
//!    application's. Read the answer's headers when [`gate::Upstream::reads_answer`] says so.
//! 5. Where the host ticks, call [`gate::Gate::poll_keys`] on every tick and send the fetch it
//!    asks for; hand the answer to [`gate::Gate::on_keys_answer`], with the same
//!    [`gate::SharedStore`], so one worker fetches for all.
//! 6. Log the [`gate::LogLine`] a decision carries, at the level it names, and count its
//!    [`gate::Events`] under [`gate::Event::metric`]. When the host fails to carry out a
//!    decision, send [`gate::fail_closed`] for it; never forward instead.
//!
//! Every request yields a decision, and nothing unauthenticated is ever forwarded to a
//! protected path: the only decision that forwards a request on a protected path carries
//! identity opened from a session cookie that this gate sealed.
//!
//! # Layers
//!
//! From the bottom up, each using only those before it: [`primitives`] (the RUN, secrets, the
//! sealed envelope), [`protocol`] (OpenID Connect as ClaveÚnica speaks it, login attempts,
//! sessions), [`web`] (cookies, return paths, identity headers, pages), [`config`] (the
//! document), [`policy`] (rules and migration modes), [`gate`] (the decision engine), and
//! [`check`] (the certification review the `claveunica-gate check` command runs).

#![deny(unsafe_code)]
#![deny(unused_must_use)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// The layers, from the bottom up; each only uses the ones before it.
pub mod check;
pub mod config;
pub mod gate;
pub mod policy;
pub mod primitives;
pub mod protocol;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod web;
