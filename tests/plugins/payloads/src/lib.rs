//! The typed payload of the test hook `alpha-event`, shared by the test
//! plugins "alpha" (which creates the hook) and "beta" (which subscribes).
//!
//! abi_stable compares types by name *and* defining crate, so two plugins
//! that exchange a typed payload share one crate that defines it, as they
//! would share `plugin-api`'s own payload types.

#![forbid(unsafe_code)]

use abi_stable::{std_types::RString, StableAbi};

/// Each callback of `alpha-event` bumps `counter` and appends its mark to `trail`.
#[repr(C)]
#[derive(StableAbi)]
pub struct AlphaEvent {
    pub counter: u64,
    pub trail: RString,
}
