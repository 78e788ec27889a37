//! The product's contexts, every callback passed through, and the trap.

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, MapType};

use crate::abi;

/// The request header that asks for the trap, and its value.
const TRIGGER: (&str, &[u8]) = ("x-drill", b"trap");

/// The product's root context, making drill request contexts.
pub fn wrap(root: Box<dyn RootContext>) -> Box<dyn RootContext> {
    Box::new(Root(root))
}

struct Root(Box<dyn RootContext>);
struct Request(Box<dyn HttpContext>);

/// Passes every `Context` callback to the wrapped product context.
macro_rules! pass_context_callbacks {
    ($($wrapper:ty),*) => {$(
        impl Context for $wrapper {
            fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, trailers: usize) {
                self.0.on_http_call_response(token, headers, body_size, trailers);
            }
            fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
                self.0.on_grpc_call_response(token_id, status_code, response_size);
            }
            fn on_grpc_stream_initial_metadata(&mut self, token_id: u32, num_elements: u32) {
                self.0.on_grpc_stream_initial_metadata(token_id, num_elements);
            }
            fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
                self.0.on_grpc_stream_message(token_id, message_size);
            }
            fn on_grpc_stream_trailing_metadata(&mut self, token_id: u32, num_elements: u32) {
                self.0.on_grpc_stream_trailing_metadata(token_id, num_elements);
            }
            fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
                self.0.on_grpc_stream_close(token_id, status_code);
            }
            fn on_foreign_function(&mut self, function_id: u32, arguments_size: usize) {
                self.0.on_foreign_function(function_id, arguments_size);
            }
            fn on_done(&mut self) -> bool {
                self.0.on_done()
            }
        }
    )*};
}

pass_context_callbacks!(Root, Request);

impl RootContext for Root {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        self.0.on_vm_start(vm_configuration_size)
    }
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.0.on_configure(plugin_configuration_size)
    }
    fn on_tick(&mut self) {
        self.0.on_tick();
    }
    fn on_queue_ready(&mut self, queue_id: u32) {
        self.0.on_queue_ready(queue_id);
    }
    fn on_log(&mut self) {
        self.0.on_log();
    }
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let request = self.0.create_http_context(context_id)?;
        Some(Box::new(Request(request)))
    }
    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        self.0.create_stream_context(context_id)
    }
    fn get_type(&self) -> Option<ContextType> {
        self.0.get_type()
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let asked =
            abi::get_map_value(MapType::HttpRequestHeaders, TRIGGER.0).is_ok_and(|v| v.as_deref() == Some(TRIGGER.1));
        let action = self.0.on_http_request_headers(num_headers, end_of_stream);
        if asked {
            // The drill itself, once the gate has carried out its decision (for a person with a
            // session: identity set, the forward prepared): a panic, which `panic = "abort"`
            // makes a Wasm trap, as any panic in the product would be.
            #[allow(clippy::panic)]
            {
                panic!("VM failure drill: trapping after the gate handled this request ({action:?})");
            }
        }
        action
    }
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_http_request_body(body_size, end_of_stream)
    }
    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.0.on_http_request_trailers(num_trailers)
    }
    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_http_response_headers(num_headers, end_of_stream)
    }
    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_http_response_body(body_size, end_of_stream)
    }
    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.0.on_http_response_trailers(num_trailers)
    }
    fn on_log(&mut self) {
        self.0.on_log();
    }
}
