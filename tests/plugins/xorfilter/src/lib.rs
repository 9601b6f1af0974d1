//! Test plugin "xorfilter": XORs every repository object with a fixed
//! byte, under the tag `xor-test`, so that the tests can show every object
//! passing through the `repository-data` filter hook, and what happens when
//! the filter is missing.

#![forbid(unsafe_code)]

use plugin_api::{App, Context, DataFilter, Plugin, Result, PRIORITY_DEFAULT};

#[derive(Default)]
struct XorPlugin;

struct Xor;

impl DataFilter for Xor {
    fn encode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(Some(data.iter().map(|b| b ^ 0x5a).collect()))
    }

    fn decode(&self, _: &Context<'_>, _: &str, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.iter().map(|b| b ^ 0x5a).collect())
    }
}

impl Plugin for XorPlugin {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_filter("repository-data", PRIORITY_DEFAULT, "xor-test", Xor);
        Ok(())
    }
}

plugin_api::export_plugin!("xorfilter", XorPlugin);
