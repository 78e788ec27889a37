//! The header floor: the host calls an identity gate cannot avoid on an authenticated
//! request, and nothing else. It reads the `Cookie` header, sets the five identity headers
//! (a set replaces any client copy), and rewrites the `Cookie` header. No cryptography, no
//! parsing: what it costs is the floor for this job in proxy-wasm.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Floor) });
}}

/// Fixed values of the same lengths as the gate's for the benchmark's identity.
const IDENTITY: [(&str, &str); 5] = [
    ("x-claveunica-run", "44444444-4"),
    ("x-claveunica-numero", "44444444"),
    ("x-claveunica-dv", "4"),
    ("x-claveunica-nombres", "Mar%C3%ADa%20Carmen"),
    ("x-claveunica-apellidos", "De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez"),
];

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let cookie = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "cookie").ok().flatten();
        for (name, value) in IDENTITY {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
        }
        // The application's cookies only: here, whatever follows the first `;`.
        let rest = cookie.as_deref().and_then(|c| c.iter().position(|&b| b == b';').map(|i| &c[i + 1..]));
        let rest = rest.map(|r| r.trim_ascii_start()).filter(|r| !r.is_empty());
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "cookie", rest);
        Action::Continue
    }
}
