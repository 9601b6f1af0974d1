//! Test plugin "xorfilter": XORs every repository object with a fixed
//! byte, under the tag `xor-test`, so that the tests can show every object
//! passing through the `repository-data` filter hook, and what happens when
//! the filter is missing.
//!
//! With `OBNAM_TEST_XOR_DECODE=fail` its `decode` returns an error (as a
//! filter that cannot reach its key would), with `=panic` it panics; with
//! `OBNAM_TEST_XOR_ERRORS_ARE_DAMAGE=1` it says its errors are about the
//! data (`DataFilter::decode_errors_are_damage`). With
//! `OBNAM_TEST_XOR_EMPTY_TAG=1` it also adds a filter with an empty tag.

#![forbid(unsafe_code)]

use plugin_api::{App, Context, DataFilter, Plugin, Result, PRIORITY_DEFAULT};

#[derive(Default)]
struct XorPlugin;

struct Xor;

impl DataFilter for Xor {
    fn encode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(Some(data.iter().map(|b| b ^ 0x5a).collect()))
    }

    fn decode(&self, _: &Context<'_>, context: &str, data: &[u8]) -> Result<Vec<u8>> {
        match std::env::var("OBNAM_TEST_XOR_DECODE").as_deref() {
            Ok("fail") => plugin_api::bail!("xor-test cannot reach its key to read {context}"),
            Ok("panic") => panic!("xor-test panics reading {context}"),
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
            // A tag no stored object can hold: refused at registration.
            app.add_filter("repository-data", PRIORITY_DEFAULT, "", Xor);
        }
        Ok(())
    }
}

plugin_api::export_plugin!("xorfilter", XorPlugin);
