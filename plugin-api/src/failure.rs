//! The error of every call across the boundary: [`Failure`], its
//! [`FailureKind`] and [`AbiResult`].
//!
//! A leaf module (it imports nothing from this crate), so that both
//! [`abi`](crate::abi) and [`repo_abi`](crate::repo_abi) can use it
//! without importing each other. [`abi`](crate::abi) re-exports its items:
//! that is where they are named.

use abi_stable::{
    std_types::{RResult, RString},
    StableAbi,
};

/// What went wrong in a plugin callback or a host service.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// An ordinary error returned by the code.
    Error = 0,
    /// The code panicked; the panic was caught on its own side of the boundary.
    Panic = 1,
}

/// An error crossing the boundary: a kind and a human-readable message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Failure {
    /// What kind it is.
    pub kind: FailureKind,
    /// The message, for the user.
    pub message: RString,
}

/// Result type of every fallible call across the boundary.
pub type AbiResult<T> = RResult<T, Failure>;
