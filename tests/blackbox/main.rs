//! Black-box tests of obnam: every test runs the built `obnam` binary with
//! real plugin libraries, in a folder and home of its own.

mod abi_version;
mod backup;
mod compression;
mod examples;
mod exclude;
mod faults;
mod hooks;
mod install;
mod loading;
mod logging;
mod repository;
mod restore;
mod settings;
