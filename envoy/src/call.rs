//! The header list of a call to the provider, in the form proxy-wasm's `dispatch_http_call`
//! takes it: the request's pseudo-headers, then the core's other headers.
//!
//! Pure, so it is tested natively (`cargo test -p claveunica-gate-envoy`).

use claveunica_core::gate::Outbound;

/// `:method`, `:scheme`, `:path` and `:authority`, then the other headers, all as the core
/// built them.
///
/// `:scheme` goes on every call although Envoy does not need it (Envoy's TLS to the provider is
/// the cluster's transport socket): Kong's proxy-wasm host, ngx_wasm_module, opens TLS for a
/// call only when its `:scheme` is `https` (`ngx_http_proxy_wasm_dispatch.c`), so without it
/// the code, the client secret and the token would cross to ClaveÚnica in the clear, and
/// APISIX's host builds the call's URL from it (`ngx_http_wasm_call.c`, `proxy-wasm.lua`).
pub fn headers(request: &Outbound) -> Vec<(&str, &str)> {
    let mut headers = Vec::with_capacity(4 + request.headers.len());
    headers.extend([
        (":method", request.method),
        (":scheme", request.scheme),
        (":path", request.path.as_str()),
        (":authority", request.authority.as_str()),
    ]);
    headers.extend(request.headers.iter().map(|(n, v)| (*n, v.as_str())));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(scheme: &'static str) -> Outbound {
        Outbound {
            method: "POST",
            scheme,
            authority: "accounts.claveunica.gob.cl".to_string(),
            path: "/openid/token".to_string(),
            headers: vec![("content-type", "application/x-www-form-urlencoded".to_string())],
            body: Some(b"grant_type=authorization_code".to_vec()),
            timeout_ms: 5000,
        }
    }

    #[test]
    fn every_call_says_its_scheme() {
        let https = outbound("https");
        assert_eq!(
            headers(&https),
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/openid/token"),
                (":authority", "accounts.claveunica.gob.cl"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        );
        // The scheme is the endpoint's, not a constant: an http endpoint (the emulator in the
        // tests) says http, so a host that picks TLS from it connects as the endpoint expects.
        let http = outbound("http");
        let scheme = |h: &[(&str, &str)]| {
            h.iter().filter(|(n, _)| *n == ":scheme").map(|(_, v)| v.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(scheme(&headers(&http)), ["http"]);
        assert_eq!(scheme(&headers(&https)), ["https"]);
    }
}
