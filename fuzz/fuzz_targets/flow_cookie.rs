#![no_main]
//! Feeds `Flow::resume` an arbitrary callback `state` (the first line of the input) and an
//! arbitrary cookie jar (the other lines, each a `Cookie` header value), with the fixed key
//! ring, the `__Host-` flow cookie prefix and the fixed clock.
//! Pass: no panic; a state the gate never makes is refused as such (`BadState`), and an
//! attempt resumes only from a genuine sealed flow cookie whose state is the one asked for.

use claveunica_core::protocol::flow::{cookie_name_for, Flow, FlowError};
use claveunica_core::web::cookies;
use claveunica_gate_fuzz::{is_genuine_flow, ring, NOW};
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "__Host-claveunica_flow_";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (state, jar) = text.split_once('\n').unwrap_or((&text, ""));
    let jar: Vec<(&str, &str)> = cookies::pairs(jar.split('\n')).collect();
    let lookup = |name: &str| jar.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);

    let name = cookie_name_for(PREFIX, state);
    if let Some(name) = &name {
        assert!(name.starts_with(PREFIX) && name.len() <= PREFIX.len() + 12, "{name:?}");
    }
    match Flow::resume(ring(), PREFIX, state, lookup, NOW, 600) {
        Ok(flow) => {
            assert_eq!(flow.state(), state);
            let value = name.as_deref().and_then(lookup).expect("a resumed flow has its cookie");
            assert!(is_genuine_flow(value), "a forged flow cookie opened: {value:?}");
        }
        Err(FlowError::BadState) => assert!(name.is_none()),
        Err(_) => assert!(name.is_some()),
    }
});
