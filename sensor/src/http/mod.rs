//! HTTP request/response understanding of captured bytes.
//!
//! - `stream`: HTTP/1.1 framing of one direction of a connection.
//! - `template`: endpoint templates (`/v1/orders/{id}`).
//! - `fingerprint`: keyed fingerprints that stand for credentials.

pub mod fingerprint;
pub mod stream;
pub mod template;
