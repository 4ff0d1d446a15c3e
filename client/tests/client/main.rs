//! The client against a scripted fake host.

mod blocking;
mod conversation;
mod fake;
mod requests;
