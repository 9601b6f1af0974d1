//! The `obnam` executable: everything happens in [`obnam_host::run`].

#![forbid(unsafe_code)]

fn main() {
    plugin_api::exit_guard::end_process(obnam_host::run());
}
