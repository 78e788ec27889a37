//! The gate as the hosts hold it: one [`Portal`] per site of the configuration, and the
//! choice, by the request's host, of the one that answers. A request whose host no site names
//! is refused here, before any site sees it: a portal's rules, sessions and callback only
//! ever meet requests meant for it. Everything a site decides carries its index back through
//! the host ([`Pending`], [`Upstream`]), so a call's answer and the application's answer come
//! back to the site that asked.

use std::sync::Arc;

use super::decision::{AnswerChange, CallOutcome, Decision, Level, LogLine, Response, Upstream, UpstreamAnswer};
use super::events::{Event, Events};
use super::failsafe::{fail_closed, reference, HostFailure};
use super::login::Pending;
use super::request::{Entropy, Request};
use super::store::{MemoryStore, SharedStore};
use super::Portal;
use crate::config::{request_host, site_for, Config};
use crate::primitives::run;
use crate::protocol::oidc::jwks::KeyCache;
use crate::web::headers::IdentityHeaders;
use crate::web::pages;

/// The longest host a log line quotes: what a client sends is its own to make long.
const LOGGED_HOST_LEN: usize = 100;

/// The gate: every site of a validated configuration, ready to serve. A document without
/// `sites` is one site that serves every host, exactly as before sites existed.
#[derive(Debug)]
pub struct Gate {
    /// The configuration's own site: the default when the top level is one, else the first
    /// entry of `sites`.
    pub(super) first: Portal,
    /// The further sites, in the document's order.
    others: Vec<Portal>,
}

impl Gate {
    /// Prepares a gate for a validated configuration, whose ledger of spent login attempts is
    /// kept in this gate's own memory ([`MemoryStore`]): right for a host whose instances share
    /// nothing (the `wasi:http` component) and for tests. A host whose workers share a store
    /// hands it to [`Gate::with_store`] instead, or a replayed callback that reaches another
    /// worker makes a second token call.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self::build(config, Arc::new(MemoryStore::default()))
    }

    /// Prepares a gate whose ledger of spent login attempts is kept in `store`, which every
    /// worker of the host shares (proxy-wasm shared data): a login attempt then makes one token
    /// call whichever worker answers its callback. Writes the ledger's empty values the first
    /// time, so build the gate before it serves (when the configuration loads).
    #[must_use]
    pub fn with_store(config: Config, store: Arc<dyn SharedStore + Send + Sync>) -> Self {
        let gate = Self::build(config, store);
        for portal in gate.portals() {
            portal.ledger.prepare();
        }
        gate
    }

    fn build(mut config: Config, store: Arc<dyn SharedStore + Send + Sync>) -> Self {
        let sites = std::mem::take(&mut config.sites);
        let names: Arc<[IdentityHeaders]> =
            std::iter::once(&config).chain(&sites).map(|c| c.headers.clone()).collect::<Vec<_>>().into();
        let portal = |c: Config| Portal::build(c, Arc::clone(&store), Arc::clone(&names));
        let others = sites.into_iter().map(portal).collect();
        Self { first: portal(config), others }
    }

    fn portals(&self) -> impl Iterator<Item = &Portal> {
        std::iter::once(&self.first).chain(&self.others)
    }

    fn portal(&self, site: usize) -> Option<&Portal> {
        match site.checked_sub(1) {
            None => Some(&self.first),
            Some(other) => self.others.get(other),
        }
    }

    /// The configuration of the gate's first site (see [`Config::sites`]); the provider's
    /// settings in it hold for every site.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.first.config
    }

    /// The configuration of the site a forwarded request went through.
    #[must_use]
    pub fn site_config(&self, upstream: &Upstream) -> &Config {
        self.portal(upstream.site).map_or(&self.first.config, |p| &p.config)
    }

    /// Which site serves the request: the one its host names, else the default. `None` when
    /// no site does, or when the request names its host twice, differently (a proxy and the
    /// application could each believe another).
    fn route(&self, req: &Request<'_>) -> Option<usize> {
        if self.others.is_empty() && self.first.config.hosts.is_empty() {
            return Some(0);
        }
        let authority = req.authority().ok()?;
        let named = authority
            .and_then(request_host)
            .and_then(|host| site_for(self.portals().map(|p| p.config.hosts.as_slice()), &host));
        named.or_else(|| self.first.config.hosts.is_empty().then_some(0))
    }

    /// Decides what to do with a request whose headers have arrived.
    pub fn on_request(&self, req: &Request<'_>, now: u64, rng: &mut dyn Entropy) -> Decision {
        let Some((site, portal)) = self.route(req).and_then(|site| Some((site, self.portal(site)?))) else {
            return Decision::Respond(self.misdirected(req, rng));
        };
        tagged(portal.on_request(req, now, rng), site)
    }

    /// Continues a login with the answer of the call it asked for. `keys` is the JWKS cache
    /// the adapter keeps for this gate.
    pub fn on_call_response(
        &self,
        pending: Pending,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
        keys: &mut KeyCache,
    ) -> Decision {
        let site = pending.site;
        match self.portal(site) {
            Some(portal) => tagged(portal.on_call_response(pending, outcome, now, rng, keys), site),
            // Only this gate makes a `Pending`, for one of its sites: never reached.
            None => Decision::Respond(fail_closed(HostFailure::Internal, "call answer for no site", rng)),
        }
    }

    /// The application answered a forwarded request. When it answered an identified request
    /// with the logout response header, the session ends and the logout page replaces its
    /// answer; otherwise the answer passes with the site's cookies added, and kept out of
    /// shared caches when it is one person's.
    pub fn on_upstream_response(&self, upstream: Upstream, answer: &UpstreamAnswer<'_>) -> AnswerChange {
        let portal = self.portal(upstream.site).unwrap_or(&self.first);
        portal.on_upstream_response(upstream, answer)
    }

    /// Whether a client-sent header must never reach the application: it has the name (in
    /// any spelling) of an identity header one of the gate's sites sets.
    #[must_use]
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.first.is_identity_header(name)
    }

    /// The request's trailers arrived (HTTP/2, or a chunked HTTP/1.1 body): the names of those
    /// that must not reach the application, which never sees identity from a trailer.
    #[must_use]
    pub fn on_request_trailers(&self, trailers: &[(&str, &str)]) -> Vec<String> {
        self.first.on_request_trailers(trailers)
    }

    /// The answer to a request no site serves: 421 Misdirected Request ("not able to produce a
    /// response for this target URI", RFC 9110, 15.5.20), with a page in the first site's
    /// voice. Nothing is forwarded, and no site's cookie is touched.
    fn misdirected(&self, req: &Request<'_>, rng: &mut dyn Entropy) -> Response {
        let reference = reference(rng);
        let host = match req.authority() {
            Ok(Some(authority)) => run::mask_runs(authority).chars().take(LOGGED_HOST_LEN).collect::<String>(),
            Ok(None) => "(none)".to_string(),
            Err(()) => "(several)".to_string(),
        };
        let agency = &self.first.config.agency;
        let body = pages::error(
            agency,
            "Dirección no reconocida",
            "Este servicio no atiende la dirección que usaste. Revisa el enlace o entra desde la página de la institución.",
            &reference,
            None,
        );
        Response {
            status: 421,
            headers: vec![
                ("content-type", "text/html; charset=utf-8".to_string()),
                ("cache-control", "no-store".to_string()),
            ],
            body,
            log: Some(LogLine {
                level: Level::Warn,
                message: format!("misdirected: no site serves host={host:?} ref={reference}"),
            }),
            events: Events::one(Event::Misdirected),
            register: None,
        }
    }
}

/// `decision`, with what comes back to the gate marked as `site`'s.
fn tagged(mut decision: Decision, site: usize) -> Decision {
    match &mut decision {
        Decision::Call(call) => call.pending.site = site,
        Decision::Forward(forward) => forward.upstream.site = site,
        Decision::Respond(_) => {}
    }
    decision
}
