//! proxy-wasm's host calls, declared here instead of taken from the SDK's `hostcalls`.
//!
//! Every SDK helper the adapter used hides a panic: each one `panic!`s on any host status it
//! does not expect (`log`, `get_current_time`, `set_tick_period`, `get_buffer`,
//! `get_map_bytes`, `get_map_value`, `set_map_value`, `add_map_value`, `send_http_response`,
//! `get_shared_data`, `set_shared_data`, `define_metric`,
//! `increment_metric`, `resume_http_request`), `get_map_value` and `get_map` `unwrap()` a
//! value that is not UTF-8, and `get_map_bytes` `unwrap()`s a header *name* that is not UTF-8
//! and indexes the host's serialized map without bounds checks. On wasm a panic aborts: the
//! VM traps, and requests on that worker get a 503 until Envoy replaces the VM (with
//! `FAIL_RELOAD`, after a second or so) or restarts. So every status comes back here as a
//! value, every map is read as bytes with checked bounds (`pairs.rs`), and nothing panics.
//!
//! What still comes from the SDK: the `proxy_wasm::main!` entry point, the context traits, the
//! dispatcher that calls them, and `hostcalls::dispatch_http_call`, which must register the
//! call's token with the dispatcher (a crate-private call) or the answer traps it with "invalid
//! token_id". That helper panics only on a status other than `Ok`, `BadArgument` (Envoy: no
//! such cluster) and `InternalFailure` (Envoy: the call could not start), the three Envoy
//! returns, and it sends only what the core built (the provider's URL, the agency's
//! credentials), never a byte of the client's. The dispatcher panics only when the host breaks the ABI
//! (an unknown context id, a duplicate context id, an answer for a call token it never
//! issued); no client or application byte reaches those checks.

use std::ptr::{null, null_mut};

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

use crate::pairs::{self, Pair};

/// A host status other than `Ok`, kept as the number the host returned (the SDK's `Status`
/// enum cannot hold a number it does not list, so reading one into it would be undefined).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    pub const NOT_FOUND: Status = Status(1);
    pub const CAS_MISMATCH: Status = Status(8);
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => "Unknown",
        };
        write!(f, "{name}({})", self.0)
    }
}

fn check(status: u32) -> Result<(), Status> {
    if status == 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: *const u8, key_len: usize, val: *const u8, len: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(map: u32, key: *const u8, key_len: usize, val: *const u8, len: usize) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
}

/// Takes ownership of bytes the host wrote into memory it got from the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host returns a pointer it obtained from `proxy_on_memory_allocate(size)`,
    // which allocates exactly `size` bytes as a boxed slice; we take it over once.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: the pointer and length describe `message`, which outlives the call.
    check(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 into `t`.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Up to `max` bytes of a buffer from `start`; `None` when there is none.
pub fn get_buffer(buffer: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length into the two out-parameters.
    match check(unsafe { proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut size) }) {
        Ok(()) => Ok(owned(data, size)),
        Err(Status::NOT_FOUND) => Ok(None),
        Err(status) => Err(status),
    }
}

/// A whole header map, names and values as the bytes on the wire.
pub fn get_map(map: MapType) -> Result<Vec<Pair>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host writes a pointer and a length into the two out-parameters.
    check(unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) })?;
    match owned(data, size) {
        Some(bytes) => pairs::deserialize(&bytes).ok_or(Status(3)),
        None => Ok(Vec::new()),
    }
}

/// One header's value as bytes; `None` when the map has no such header.
pub fn get_map_value(map: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: `name` outlives the call; the host writes a pointer and a length.
    match check(unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size) }) {
        Ok(()) => Ok(Some(owned(data, size).unwrap_or_default())),
        Err(Status::NOT_FOUND) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Replaces every value of `name` with `value`.
pub fn set_map_value(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both slices outlive the call.
    check(unsafe { proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Removes every value of `name`.
pub fn remove_map_value(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: `name` outlives the call.
    check(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// Adds a value of `name`, keeping the others.
pub fn add_map_value(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both slices outlive the call.
    check(unsafe { proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Sets a property of the request: Envoy keeps a one-segment `path` in the request's filter
/// state as `wasm.<path>`, where its access log reads it (`%FILTER_STATE(wasm.<path>:PLAIN)%`).
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both slices outlive the call.
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Answers the request here instead of forwarding it.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let headers = pairs::serialize(headers);
    // SAFETY: every pointer and length describes a slice that outlives the call.
    check(unsafe {
        proxy_send_local_response(status, null(), 0, body.as_ptr(), body.len(), headers.as_ptr(), headers.len(), -1)
    })
}

/// A shared-data value and its version (`None` when never written).
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: `key` outlives the call; the host writes a pointer, a length and a version.
    match check(unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }) {
        Ok(()) => Ok((owned(data, size), (cas != 0).then_some(cas))),
        Err(Status::NOT_FOUND) => Ok((None, None)),
        Err(status) => Err(status),
    }
}

/// Writes a shared-data value if its version is still `cas` (any version when `None`).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: both slices outlive the call.
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    // SAFETY: `name` outlives the call; the host writes one u32.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, by) })
}

/// Resumes a paused request (stream type 0, the request).
pub fn resume_request() -> Result<(), Status> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(0) })
}
