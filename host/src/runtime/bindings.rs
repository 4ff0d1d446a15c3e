//! Host bindings generated from `wit/tcpy.wit`: the `handler` world (`Handler`,
//! `HandlerPre`) and the host side of its imports (`tcpy::handler::connection::Host`).

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: {
        // `recv` traps the handler when the client breaks the conversation, `send`
        // when the handler passes its limit of messages.
        "tcpy:handler/connection.recv": async | trappable,
        "tcpy:handler/connection.send": async | trappable,
        default: async,
    },
    exports: { default: async },
});
