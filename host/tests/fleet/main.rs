//! A fleet on loopback: real `tcpy-host` processes sharing one handlers directory and
//! one real `redis-server`, a real HAProxy in front, and clients that fail over.
//! Each test is bounded in time and prints the figures the fleet's guarantees rest on
//! (requests, retries, lost, duplicated).
mod drain;
mod failover;
mod keys;
mod rolling;
