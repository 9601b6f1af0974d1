//! The `obnam` executable: everything happens in [`obnam_host::run`].

fn main() {
    std::process::exit(obnam_host::run());
}
