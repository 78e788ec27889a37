//! An HTTP/2 client over plain TCP (h2c with prior knowledge, as Envoy's `AUTO` codec takes it)
//! for what curl's command line cannot send: a request body followed by trailers, a HEADERS
//! frame with END_STREAM after the DATA. Built on the `h2` crate; each request has its own
//! connection and runtime, bounded by [`HTTP_TIMEOUT`].

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::client::HTTP_TIMEOUT;
use super::parse::Response;

/// A request sent over its own HTTP/2 connection.
pub struct H2Request<'a> {
    /// `POST`, `GET` ...
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Header fields (names must be lower case: HTTP/2 refuses others).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, sent as one DATA frame.
    pub body: &'a [u8],
    /// Trailer fields, sent after the body (names lower case).
    pub trailers: &'a [(&'a str, &'a str)],
}

fn field_map(what: &str, fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{what} name {name:?}: {e}"));
        let value = HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{what} value {value:?}: {e}"));
        map.append(name, value);
    }
    map
}

/// Sends `request` to `base` (`http://127.0.0.1:PORT`) over HTTP/2 and reads the whole answer.
/// Any failure to speak HTTP/2 with the host, or an answer later than [`HTTP_TIMEOUT`], fails
/// the test.
pub fn h2_request(base: &str, request: &H2Request<'_>) -> Response {
    let url = format!("{base}{}", request.path);
    let what = format!("h2 {} {url}", request.method);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{what}: no tokio runtime: {e}"));
    let exchange = exchange(&url, request);
    match runtime.block_on(async { tokio::time::timeout(HTTP_TIMEOUT, exchange).await }) {
        Ok(Ok((status, headers, body))) => {
            Response { url: what, status, headers, body: String::from_utf8_lossy(&body).into_owned() }
        }
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {HTTP_TIMEOUT:?}"),
    }
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

async fn exchange(url: &str, request: &H2Request<'_>) -> Result<Answer, String> {
    let addr = url.trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (client, connection) = h2::client::handshake(tcp).await.map_err(|e| format!("handshake: {e}"))?;
    // The connection drives the frames both ways; it ends when the client is dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("h2 connection: {e}");
        }
    });
    let mut client = client.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let mut builder = http::Request::builder().method(request.method).uri(url);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(field_map("header", request.headers));
    }
    let head = builder.body(()).map_err(|e| format!("request: {e}"))?;
    let (answer, mut stream) = client.send_request(head, false).map_err(|e| format!("send headers: {e}"))?;
    stream.send_data(Bytes::copy_from_slice(request.body), false).map_err(|e| format!("send data: {e}"))?;
    stream.send_trailers(field_map("trailer", request.trailers)).map_err(|e| format!("send trailers: {e}"))?;
    let answer = answer.await.map_err(|e| format!("answer: {e}"))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("answer body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, headers, bytes))
}
