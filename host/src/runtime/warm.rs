//! Pre-warmed instances: fresh instances of a busy handler, made ahead of the requests
//! that will use them, so instantiation leaves the latency path.
//!
//! Each is made exactly like a request's own (a new `Store`, an instance from the
//! pool), with no client and no caller yet, and is used by **exactly one** request,
//! which then drops it as it drops any instance; nothing ever runs in it before that
//! request. The request gives it its conversation, its caller's identity and fresh
//! clocks ([`RequestState::begin`]) before the first call.
//!
//! A request that takes one (or finds none) asks for a replacement, made in a task of
//! its own after the tasks already waiting to run. The whole host holds at most
//! [`Limits::prewarm`](super::Limits::prewarm) of them (the pool has room for them
//! beside `max_in_flight`), and only handlers that were called recently have any. A hot
//! swap discards the old version's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use super::bindings;
use super::state::RequestState;

/// One instance made ahead of its request.
pub(super) struct Warm {
    /// Its store: no client, no caller, until a request begins in it.
    pub(super) store: Store<RequestState>,
    /// The instance.
    pub(super) instance: bindings::Handler,
    /// Its place in the host's budget of pre-warmed instances, given back once a
    /// request takes it.
    _budget: OwnedSemaphorePermit,
}

impl Warm {
    /// `instance` in `store`, counted against the host's budget by `budget`.
    pub(super) fn new(
        store: Store<RequestState>,
        instance: bindings::Handler,
        budget: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            store,
            instance,
            _budget: budget,
        }
    }
}

/// One handler's pre-warmed instances.
#[derive(Default)]
pub(super) struct Shelf {
    ready: Mutex<Vec<Warm>>,
    /// Being made now.
    making: AtomicUsize,
    /// Set once the handler no longer serves: nothing more is kept.
    closed: AtomicBool,
}

impl Shelf {
    /// A pre-warmed instance, if one is ready; it is the caller's alone.
    pub(super) fn take(&self) -> Option<Warm> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Instances ready now.
    pub(super) fn len(&self) -> usize {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// A place in the host's `budget` for one more instance, if the shelf is below
    /// `most` counting those being made, and open. Counted as being made until
    /// [`Shelf::made`].
    pub(super) fn reserve(&self, budget: &Arc<Semaphore>, most: usize) -> Option<OwnedSemaphorePermit> {
        if self.closed.load(Ordering::Acquire) || self.len() + self.making.load(Ordering::Acquire) >= most {
            return None;
        }
        let permit = Arc::clone(budget).try_acquire_owned().ok()?;
        self.making.fetch_add(1, Ordering::AcqRel);
        Some(permit)
    }

    /// Ends a [`Shelf::reserve`]: keeps `warm` if it was made and the shelf is open.
    pub(super) fn made(&self, warm: Option<Warm>) {
        if let Some(warm) = warm {
            // NB: checked under the lock that `close` takes after setting `closed`, so
            // no instance is kept once `close` has emptied the shelf.
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            if !self.closed.load(Ordering::Acquire) {
                ready.push(warm);
            }
        }
        self.making.fetch_sub(1, Ordering::AcqRel);
    }

    /// Drops every instance and keeps none from now on; how many it dropped.
    pub(super) fn close(&self) -> usize {
        self.closed.store(true, Ordering::Release);
        let dropped = std::mem::take(&mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner));
        dropped.len()
    }
}
