//! Hooks: named extension points that plugins create and subscribe to.
//!
//! A *plain* hook calls every callback, in priority order, with one payload
//! the callbacks may change (the backup plugin's `backup-exclude` hook sets
//! `exclude = true`). A *filter* hook threads bytes through its filters:
//! ascending priority on write, the reverse on read, each filter that changed
//! the data leaving its tag so a reader knows what to undo.
//!
//! Payloads of plain hooks are `#[repr(C)]` types deriving `StableAbi`. The
//! host checks, once when a callback is bound to a hook, that the callback's
//! payload type has the same layout as the hook's; calls then pass a bare
//! pointer, costing a few nanoseconds. Hooks that third parties invent can
//! use [`JsonPayload`] and the `*_json_*` methods instead.

use std::marker::PhantomData;

use abi_stable::{std_types::RString, StableAbi};

use crate::abi::HookId;

/// Priority of callbacks that must run before most others.
pub const PRIORITY_EARLY: i32 = 250;
/// Priority of ordinary callbacks.
pub const PRIORITY_DEFAULT: i32 = 500;
/// Priority of callbacks that must run after most others.
pub const PRIORITY_LATE: i32 = 750;

/// The payload of a hook whose callbacks exchange JSON.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct JsonPayload {
    /// A JSON document; callbacks may replace it.
    pub json: RString,
}

/// A resolved plain hook with payload type `P`, obtained from
/// [`Context::hook`](crate::Context::hook). Cheap to copy and to call.
pub struct Hook<P> {
    pub(crate) id: HookId,
    pub(crate) _payload: PhantomData<fn(&mut P)>,
}

impl<P> Clone for Hook<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Hook<P> {}

impl<P> std::fmt::Debug for Hook<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook({})", self.id.0)
    }
}
