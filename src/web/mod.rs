//! The web surface: what the browser and the legacy application see of the gate. Cookies read
//! and written, return paths checked for open redirects, identity headers rendered, and the
//! Spanish pages, every value escaped.

pub mod cookies;
pub mod headers;
pub mod pages;
pub mod redirect;
