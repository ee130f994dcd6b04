//! HTTP request/response understanding of captured bytes.
//!
//! - `stream`: HTTP/1.1 framing of one direction of a connection.
//! - `h2`: HTTP/2 frames and HPACK of one connection, both directions.
//! - `template`: endpoint templates (`/v1/orders/{id}`).
//! - `fingerprint`: keyed fingerprints that stand for credentials.

pub mod budget;
pub mod encoding;
pub mod fingerprint;
pub mod h2;
pub mod stream;
pub mod template;
pub mod ws;
