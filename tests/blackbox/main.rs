//! Black-box tests of obnam: every test runs the built `obnam` binary with
//! real plugin libraries, in a folder and home of its own.

mod abi_version;
mod backends;
mod backup;
mod changing;
mod cli_edges;
mod compression;
mod concurrency;
mod declarations;
mod docs_settings;
mod encryption;
mod examples;
mod exclude;
mod faults;
mod forget;
mod help;
mod hooks;
mod hostile_filters;
mod inspect;
mod install;
mod integrity;
mod json_output;
mod loading;
mod logging;
mod mount;
mod progress;
mod prune;
mod prune_interleavings;
mod remote;
mod report;
mod repository;
mod restore;
mod setting_values;
mod settings;
mod sparse;
mod storage_faults;
