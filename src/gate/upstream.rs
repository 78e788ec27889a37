//! The forwarded request's way there and back: which client headers and trailers never reach
//! the application, and what becomes of the application's answer (the logout it may ask for,
//! the cookies the gate adds).

use super::decision::{AnswerChange, Level, LogLine, Response, Upstream, UpstreamAnswer};
use super::events::{Event, Events};
use super::request::Request;
use super::Gate;

impl Gate {
    /// Whether a client-sent header must never reach the application: it has the name (in
    /// any spelling) of an identity header this gate sets.
    #[must_use]
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.config.headers.is_identity_name(name)
    }

    /// The client headers a forwarded request loses: identity names that `set` does not
    /// already replace (setting a header replaces every copy of it). Each name once.
    pub(super) fn removals(&self, req: &Request<'_>, set: &[(String, String)]) -> Vec<String> {
        let mut remove: Vec<String> = Vec::new();
        for (name, _) in req.headers {
            let replaced = set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            if !replaced && self.is_identity_header(name) && !remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                remove.push(name.to_ascii_lowercase());
            }
        }
        remove
    }

    /// The request's trailers arrived (HTTP/2, or a chunked HTTP/1.1 body): the names of those
    /// that must not reach the application, which never sees identity from a trailer.
    #[must_use]
    pub fn on_request_trailers(&self, trailers: &[(&str, &str)]) -> Vec<String> {
        self.removals(&Request { method: "", path: "", headers: trailers }, &[])
    }

    /// The application answered a forwarded request. When it answered an identified request
    /// with the logout response header (for instance because it does not know the RUN), the
    /// session ends and the logout page replaces its answer; otherwise the answer passes with
    /// the gate's cookies added.
    pub fn on_upstream_response(&self, upstream: Upstream, answer: &UpstreamAnswer<'_>) -> AnswerChange {
        let asked = &self.config.logout_response_header;
        if upstream.identified && answer.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(asked)) {
            let log = LogLine { level: Level::Info, message: "logout requested by the application".into() };
            return AnswerChange::Replace(self.app_logout(log));
        }
        AnswerChange::Pass { add: upstream.set_cookies.into_iter().map(|c| ("set-cookie", c)).collect() }
    }

    fn app_logout(&self, log: LogLine) -> Response {
        self.logout_response(200, Vec::new(), log, Events::one(Event::AppLogout))
    }
}
