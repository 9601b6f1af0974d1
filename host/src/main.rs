//! The `obnam` executable: everything happens in [`obnam_host::run`].

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(obnam_host::run());
}
