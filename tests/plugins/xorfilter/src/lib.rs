//! Test plugin "xorfilter": XORs every repository object with a fixed
//! byte, under the tag `xor-test`, so that the tests can show every object
//! passing through the `repository-data` filter hook, and what happens when
//! the filter is missing.
//!
//! With `OBNAM_TEST_XOR_DECODE=fail` its `decode` returns an error (as a
//! filter that cannot reach its key would), with `=panic` it panics, with
//! `=garble` it gives back wrong bytes without an error; with
//! `OBNAM_TEST_XOR_ERRORS_ARE_DAMAGE=1` it says its errors are about the
//! data (`DataFilter::decode_errors_are_damage`). With
//! `OBNAM_TEST_XOR_EMPTY_TAG=1` it also adds filters with an empty tag and
//! one that is not ASCII,
//! and with `OBNAM_TEST_XOR_TAG_TWICE=1` a second filter with its own tag
//! (as a second plugin could). With `OBNAM_TEST_XOR_ENCODE=lengthen` its
//! `encode` appends bytes its `decode` leaves (a filter that does not
//! undo its own work); with `=from-N` it does so only from the Nth
//! object it encodes on, with `=records` only to generation records, and
//! with `=fail` it returns an error instead. With
//! `OBNAM_TEST_XOR_ONLY=PREFIX` it encodes only the objects whose name
//! starts with PREFIX (`chunk/`, say).

#![forbid(unsafe_code)]

use plugin_api::{App, Context, DataFilter, Plugin, Result, PRIORITY_DEFAULT};

#[derive(Default)]
struct XorPlugin;

struct Xor;

/// Objects encoded in this process.
static ENCODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl DataFilter for Xor {
    fn encode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(prefix) = std::env::var_os("OBNAM_TEST_XOR_ONLY") {
            if !context.starts_with(&*prefix.to_string_lossy()) {
                return Ok(None);
            }
        }
        let mut out: Vec<u8> = data.iter().map(|b| b ^ 0x5a).collect();
        let n = ENCODED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lengthen = match std::env::var("OBNAM_TEST_XOR_ENCODE").as_deref() {
            Ok("fail") => plugin_api::bail!("Permission denied (os error 13)"),
            Ok("lengthen") => true,
            Ok("records") => context.starts_with("generations/"),
            Ok(other) => other
                .strip_prefix("from-")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|from| n >= from),
            Err(_) => false,
        };
        if lengthen {
            out.extend_from_slice(b"extra");
        }
        Ok(Some(out))
    }

    fn decode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>> {
        match std::env::var("OBNAM_TEST_XOR_DECODE").as_deref() {
            Ok("fail") => plugin_api::bail!("xor-test cannot reach its key to read {context}"),
            Ok("panic") => panic!("xor-test panics reading {context}"),
            // Wrong bytes, and no error: as a buggy decode gives.
            Ok("garble") => Ok(data.iter().map(|b| b ^ 0x33).collect()),
            _ => Ok(data.iter().map(|b| b ^ 0x5a).collect()),
        }
    }

    fn decode_errors_are_damage(&self) -> bool {
        std::env::var_os("OBNAM_TEST_XOR_ERRORS_ARE_DAMAGE").is_some()
    }
}

impl Plugin for XorPlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_filter("repository-data", PRIORITY_DEFAULT, "xor-test", Xor);
        if std::env::var_os("OBNAM_TEST_XOR_EMPTY_TAG").is_some() {
            // Tags no stored object can hold: refused at registration.
            app.add_filter("repository-data", PRIORITY_DEFAULT, "", Xor);
            app.add_filter("repository-data", PRIORITY_DEFAULT, "tag \u{e9}", Xor);
        }
        if std::env::var_os("OBNAM_TEST_XOR_TAG_TWICE").is_some() {
            app.add_filter("repository-data", PRIORITY_DEFAULT, "xor-test", Xor);
        }
        Ok(())
    }
}

plugin_api::export_plugin!("xorfilter", XorPlugin);
