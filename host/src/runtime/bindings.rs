//! Host bindings generated from `wit/`: the `handler` world (`Handler`, `HandlerPre`)
//! and the host side of its imports (`tcpy::handler::connection::Host`, and the
//! `wasi::keyvalue` interfaces, whose resources are [`Bucket`] and [`Cas`]).

pub use super::keyvalue::{Bucket, Cas};

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: {
        // `recv` traps the handler when the client breaks the conversation, `send`
        // when the handler passes its limit of messages.
        "tcpy:handler/connection.recv": async | trappable,
        "tcpy:handler/connection.send": async | trappable,
        // Trappable only for a resource handle the host cannot find; every store
        // failure is an `error` the handler gets.
        "wasi:keyvalue": async | trappable,
        default: async,
    },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});
