//! Session tests: no socket, no runtime; bytes and completions in, replies out.

mod body;
mod common;
mod lmtp;
mod pipelining;
mod robustness;
mod smtp;
mod tls_auth;
