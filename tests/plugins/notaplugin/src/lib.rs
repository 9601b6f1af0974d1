//! A shared library with an exported function but no obnam plugin entry
//! point: the host must refuse it with a one-line warning.

/// Some exported function, so the library is not empty.
#[unsafe(no_mangle)]
pub extern "C" fn obnam_test_not_a_plugin() -> i32 {
    42
}
