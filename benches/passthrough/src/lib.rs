//! The Unit floor (benches/README.md, variant 6): a `wasi:http/proxy` component that forwards
//! each request to `BENCH_UPSTREAM` (`host:port`, plain http) through
//! `wasi:http/outgoing-handler` and streams the answer back, with no decision of its own. Run
//! under `wasmtime serve` beside the gate's component, it is what any reverse proxy written as
//! a component costs there, so the ratio between the two is the gate's own share.
//!
//! Built only for `wasm32-wasip2`; on other targets the crate is empty.

#![deny(unsafe_code)]

#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p2"))]
mod component {
    use wasi::http::types::{
        ErrorCode, Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse,
        ResponseOutparam, Scheme,
    };
    use wasi::io::streams::{InputStream, OutputStream, StreamError};

    /// Whether a header stays behind: the connection-scoped ones and those wasi:http hosts
    /// refuse (the same names the gate's component drops, `nginx-unit/src/forward.rs`), and
    /// `Host`, which the upstream's address replaces.
    fn stays(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade")
            || matches!(name.as_str(), "http2-settings" | "host")
            || name.starts_with("proxy-")
    }
    /// `blocking_write_and_flush` takes at most this many bytes at once.
    const PIECE: usize = 4096;

    struct Passthrough;

    impl wasi::exports::http::incoming_handler::Guest for Passthrough {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            if let Err(why) = forward(request, out) {
                eprintln!("bench-passthrough: {why}");
            }
        }
    }

    // The macro writes the `extern "C"` export the host calls.
    #[allow(unsafe_code)]
    mod export {
        use super::Passthrough;
        wasi::http::proxy::export!(Passthrough);
    }

    fn kept(fields: &Fields) -> Fields {
        let copy = Fields::new();
        for (name, value) in fields.entries() {
            if !stays(&name) {
                // A name the host refuses goes without, as in the gate's component.
                let _ = copy.append(&name, &value);
            }
        }
        copy
    }

    /// Copies `from` to `to` until `from` ends.
    fn pump(from: &InputStream, to: &OutputStream) -> Result<(), String> {
        loop {
            match from.blocking_read(PIECE as u64) {
                Ok(bytes) => {
                    for piece in bytes.chunks(PIECE) {
                        to.blocking_write_and_flush(piece).map_err(|e| format!("write: {e:?}"))?;
                    }
                }
                Err(StreamError::Closed) => return Ok(()),
                Err(e) => return Err(format!("read: {e:?}")),
            }
        }
    }

    fn forward(request: IncomingRequest, out: ResponseOutparam) -> Result<(), String> {
        let Ok(upstream) = std::env::var("BENCH_UPSTREAM") else {
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("BENCH_UPSTREAM is not set".into()))));
            return Err("BENCH_UPSTREAM is not set".into());
        };
        let outgoing = OutgoingRequest::new(kept(&request.headers()));
        let addressed = outgoing
            .set_method(&request.method())
            .and_then(|()| outgoing.set_scheme(Some(&Scheme::Http)))
            .and_then(|()| outgoing.set_authority(Some(&upstream)))
            .and_then(|()| outgoing.set_path_with_query(request.path_with_query().as_deref()));
        if addressed.is_err() {
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("request refused".into()))));
            return Err("the host refused the request line".into());
        }
        // As the gate's component does: the first piece of the body is read before the call,
        // so a request without one (a GET) goes upstream without one, not as an empty chunked
        // body.
        let down_body = request.consume().map_err(|()| "no incoming body")?;
        let from = down_body.stream().map_err(|()| "no incoming stream")?;
        let first = match from.blocking_read(PIECE as u64) {
            Ok(bytes) => Some(bytes),
            Err(StreamError::Closed) => None,
            Err(e) => return Err(format!("read: {e:?}")),
        };
        let up_body = match first {
            Some(_) => Some(outgoing.body().map_err(|()| "no request body")?),
            None => None,
        };
        let future = match wasi::http::outgoing_handler::handle(outgoing, None) {
            Ok(future) => future,
            Err(code) => {
                ResponseOutparam::set(out, Err(code));
                return Err("the host refused the call".into());
            }
        };
        if let (Some(up_body), Some(first)) = (up_body, first) {
            {
                let to = up_body.write().map_err(|()| "no outgoing stream")?;
                to.blocking_write_and_flush(&first).map_err(|e| format!("write: {e:?}"))?;
                pump(&from, &to)?;
            }
            OutgoingBody::finish(up_body, None).map_err(|e| format!("{e:?}"))?;
        }
        drop(from);
        drop(IncomingBody::finish(down_body));
        future.subscribe().block();
        let answer = match future.get() {
            Some(Ok(Ok(answer))) => answer,
            Some(Ok(Err(code))) => {
                ResponseOutparam::set(out, Err(code));
                return Err("the upstream did not answer".into());
            }
            _ => {
                ResponseOutparam::set(out, Err(ErrorCode::InternalError(None)));
                return Err("no answer".into());
            }
        };
        let response = OutgoingResponse::new(kept(&answer.headers()));
        response.set_status_code(answer.status()).map_err(|()| "status refused")?;
        let body = response.body().map_err(|()| "no response body")?;
        ResponseOutparam::set(out, Ok(response));
        let up_answer = answer.consume().map_err(|()| "no answer body")?;
        {
            let from = up_answer.stream().map_err(|()| "no answer stream")?;
            let to = body.write().map_err(|()| "no response stream")?;
            pump(&from, &to)?;
        }
        drop(IncomingBody::finish(up_answer));
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
    }
}
