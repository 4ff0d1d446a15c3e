//! End-to-end tests: a real host on port 0, the real handlers built to wasm, real TCP.

mod bad_input;
mod bench;
mod conversation;
mod failures;
mod hardening;
mod hostile_clients;
mod hostile_handlers;
mod hot_swap;
mod idempotency;
mod keyvalue;
mod languages;
mod load;
mod manifests;
mod operations;
mod prewarm;
mod requests;
mod security;
mod shutdown;
