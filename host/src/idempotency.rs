//! Idempotency keys: a request that carries `"idempotency_key"` runs at most once
//! however often it is sent, to this host or to any host sharing its store.
//!
//! Before running such a request the host *claims* its key in the store (Redis across
//! a fleet, the embedded store on one host) with a lease a little longer than the
//! handler may run; when the handler ends, the claim is replaced by the *record* of
//! its answer, kept for `--idempotency-ttl`. A request whose key is recorded gets the
//! recorded answer without running; one whose key is claimed waits for the record up
//! to `--idempotency-wait`, then gets `in_progress`. A claim whose host died expires
//! with its lease; only then may the key run again. docs/protocol.md states the
//! guarantee this gives.
//!
//! Keys are scoped by the caller's identity: one client's key never reaches another
//! identity's answer. A key used again with another command or other params gets
//! `idempotency_conflict`, and nothing runs.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tcpy_protocol::{ErrorCode, Object, error_response};

use crate::keyvalue::{StoreError, Stores};

/// How long answers are kept, and how long a duplicate waits for the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencySettings {
    /// How long the answer of a keyed request is kept for its retries.
    pub ttl: Duration,
    /// How long a request waits while its key is claimed by another, running one.
    pub wait: Duration,
}

impl IdempotencySettings {
    /// The defaults: answers kept a day, duplicates wait up to 5 s.
    pub const DEFAULT: Self = Self {
        ttl: Duration::from_secs(24 * 60 * 60),
        wait: Duration::from_secs(5),
    };
}

/// How much longer than the handler's `max_request_time` a claim is held: time for the
/// record to reach the store after the handler ends.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// First and longest pause between two looks at a claimed key.
const POLL: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(200));

/// What the ledger says about a keyed request.
#[derive(Debug)]
pub enum Admission {
    /// The key is claimed for this request: run it, then [`Ledger::record`] its answer.
    Run(Claim),
    /// The key's request ran already: its answer, to send again as it is.
    Replay(Object),
    /// Not run: the error response to send (`in_progress`, `idempotency_conflict`,
    /// `unavailable`).
    Refuse(Object),
}

/// A claimed key: recorded with the request's answer, or released if it never ran.
#[derive(Debug)]
#[must_use = "a claim is recorded or released; a dropped one holds its key until the lease ends"]
pub struct Claim {
    id: String,
    held: Vec<u8>,
    fingerprint: String,
}

/// A ledger entry, as the store keeps it (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    /// A host is running the request.
    Running {
        /// Which claim: tells a claim from a later one after its lease ended.
        owner: String,
        /// The command and params the key was first used with.
        fingerprint: String,
    },
    /// The request ended with `response`.
    Done {
        /// As in `Running`.
        fingerprint: String,
        /// The answer.
        response: Object,
    },
}

/// The host's idempotency ledger, kept in its stores.
pub struct Ledger {
    stores: Arc<Stores>,
    settings: IdempotencySettings,
    /// This host's claims are `{instance}-{n}`.
    instance: u64,
    claims: AtomicU64,
}

impl Ledger {
    /// A ledger in `stores`.
    pub fn new(stores: Arc<Stores>, settings: IdempotencySettings) -> Self {
        Self {
            stores,
            settings,
            // NB: std seeds each RandomState from the OS's randomness: hosts sharing
            // a store tell their claims apart.
            instance: RandomState::new().hash_one(std::process::id()),
            claims: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &IdempotencySettings {
        &self.settings
    }

    /// Claims `key` of `identity` for a request of `cmd` with `params` that may run for
    /// `max_request_time`, waiting while another request holds it.
    pub async fn admit(
        &self,
        identity: Option<&str>,
        key: &str,
        cmd: &str,
        params: &Object,
        max_request_time: Duration,
    ) -> Admission {
        let id = scoped_id(identity, key);
        let fingerprint = fingerprint(cmd, params);
        let owner = format!(
            "{:016x}-{}",
            self.instance,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let running = Entry::Running {
            owner,
            fingerprint: fingerprint.clone(),
        };
        let Ok(held) = serde_json::to_vec(&running) else {
            return Admission::Refuse(unavailable("cannot encode an idempotency claim"));
        };
        let lease = max_request_time + self.stores.limits().timeout + LEASE_MARGIN;
        let give_up = Instant::now() + self.settings.wait;
        let mut pause = POLL.0;
        loop {
            let found = match self.stores.claim(&id, &held, lease).await {
                Ok(None) => {
                    return Admission::Run(Claim {
                        id,
                        held,
                        fingerprint,
                    });
                }
                Ok(Some(found)) => found,
                Err(error) => return Admission::Refuse(store_failed(&error)),
            };
            match serde_json::from_slice::<Entry>(&found) {
                Ok(Entry::Done {
                    fingerprint: first,
                    response,
                }) => {
                    return if first == fingerprint {
                        Admission::Replay(response)
                    } else {
                        Admission::Refuse(conflict())
                    };
                }
                Ok(Entry::Running {
                    fingerprint: first, ..
                }) if first != fingerprint => {
                    return Admission::Refuse(conflict());
                }
                Ok(Entry::Running { .. }) => {}
                Err(error) => {
                    tracing::error!(%error, "unreadable idempotency ledger entry");
                    return Admission::Refuse(unavailable(
                        "the idempotency ledger entry of this key is unreadable",
                    ));
                }
            }
            let now = Instant::now();
            if now >= give_up {
                return Admission::Refuse(error_response(
                    ErrorCode::InProgress,
                    format!(
                        "a request with this idempotency key is still running (waited {:?}); \
                         send it again with the same key later",
                        self.settings.wait
                    ),
                ));
            }
            tokio::time::sleep(pause.min(give_up - now)).await;
            pause = (pause * 2).min(POLL.1);
        }
    }

    /// Replaces `claim` by the record of `response`, kept for the TTL. A failure is
    /// logged: the claim then expires with its lease, after which the key may run again.
    pub async fn record(&self, claim: Claim, response: &Object) {
        let done = Entry::Done {
            fingerprint: claim.fingerprint.clone(),
            response: response.clone(),
        };
        let record = match serde_json::to_vec(&done) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(%error, "cannot encode an idempotency record");
                return;
            }
        };
        self.settle(&claim, Some(&record)).await;
    }

    /// Gives up `claim` of a request that never ran: the key may run at once.
    pub async fn release(&self, claim: Claim) {
        self.settle(&claim, None).await;
    }

    async fn settle(&self, claim: &Claim, record: Option<&[u8]>) {
        match self
            .stores
            .settle(&claim.id, &claim.held, record, self.settings.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "an idempotency claim had expired before its request ended; its key may have run again"
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot record an idempotency key; it will run again once its lease ends")
            }
        }
    }

    /// Removes expired entries now and then, for as long as the task runs (the embedded
    /// store keeps them until swept; Redis expires them by itself).
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            match self.stores.sweep_ledger().await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "expired idempotency keys removed"),
                Err(error) => tracing::warn!(%error, "cannot sweep expired idempotency keys"),
            }
        }
    }
}

/// The ledger id of `key` for `identity`: a digest, so ids are short and no key of
/// one identity can spell another's.
fn scoped_id(identity: Option<&str>, key: &str) -> String {
    let mut digest = Sha256::new();
    match identity {
        Some(identity) => {
            digest.update([1]);
            digest.update((identity.len() as u64).to_be_bytes());
            digest.update(identity.as_bytes());
        }
        None => digest.update([0]),
    }
    digest.update(key.as_bytes());
    hex(&digest.finalize())
}

/// What a key was first used for: the command and its params.
fn fingerprint(cmd: &str, params: &Object) -> String {
    let mut digest = Sha256::new();
    digest.update((cmd.len() as u64).to_be_bytes());
    digest.update(cmd.as_bytes());
    // NB: serde_json's maps are sorted by key, so equal params give equal text.
    digest.update(serde_json::Value::Object(params.clone()).to_string().as_bytes());
    hex(&digest.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn conflict() -> Object {
    error_response(
        ErrorCode::IdempotencyConflict,
        "this idempotency key was used by a request with another command or other params; not run",
    )
}

fn store_failed(error: &StoreError) -> Object {
    tracing::warn!(%error, "cannot claim an idempotency key");
    unavailable("the store that records idempotency keys did not answer; not run")
}

fn unavailable(message: &str) -> Object {
    error_response(ErrorCode::Unavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tcpy_protocol::test_support::object;

    #[test]
    fn keys_are_scoped_by_identity() {
        assert_ne!(scoped_id(None, "k"), scoped_id(Some("ann"), "k"));
        assert_ne!(scoped_id(Some("ann"), "bk"), scoped_id(Some("annb"), "k"));
        assert_eq!(scoped_id(Some("ann"), "k"), scoped_id(Some("ann"), "k"));
    }

    #[test]
    fn fingerprints_tell_commands_and_params_apart() {
        let params = object(json!({"x": 1, "y": 2}));
        let reordered = object(json!({"y": 2, "x": 1}));
        assert_eq!(fingerprint("add", &params), fingerprint("add", &reordered));
        assert_ne!(fingerprint("add", &params), fingerprint("sub", &params));
        assert_ne!(
            fingerprint("add", &params),
            fingerprint("add", &object(json!({"x": 1})))
        );
    }
}
