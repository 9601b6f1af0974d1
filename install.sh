#!/bin/sh
# Install obnam and its bundled plugins.
#
#   ./install.sh [--prefix DIR] [--from TARGET_PROFILE_DIR]
#
# Builds the workspace in release mode (unless --from names a folder that
# already holds a build, such as target/debug), then installs
#   DIR/bin/obnam                      the host
#   DIR/lib/obnam/plugins/*.so         the bundled plugins
#   DIR/share/man/man1/obnam.1         the manual page (obnam manpage)
#   DIR/share/bash-completion/completions/obnam, DIR/share/zsh/site-functions/_obnam,
#   DIR/share/fish/vendor_completions.d/obnam.fish
#                                      shell completions (obnam completions SHELL)
# The default prefix is /usr/local. The installed obnam finds its plugins
# in ../lib/obnam/plugins relative to itself.
set -eu

prefix=/usr/local
from=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --from) from=$2; shift 2 ;;
        --from=*) from=${1#--from=}; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "$from" ]; then
    (cd "$here" && cargo build --release --workspace)
    from=${CARGO_TARGET_DIR:-$here/target}/release
fi
[ -x "$from/obnam" ] || { echo "install.sh: no obnam binary in $from" >&2; exit 1; }

# Folders this makes are writable by their owner only whatever the
# user's umask (002 is common): obnam refuses to load plugins from a
# folder others may write to.
umask 022
mkdir -p "$prefix/bin" "$prefix/lib/obnam/plugins"
install -m 0755 "$from/obnam" "$prefix/bin/obnam"
found=0
for lib in "$from"/libobnam_plugin_*.so; do
    [ -e "$lib" ] || continue
    install -m 0755 "$lib" "$prefix/lib/obnam/plugins/"
    found=$((found + 1))
done
# Made by the installed obnam, with the plugins it loads from where it
# now finds them, so that their subcommands and settings are included.
# (Without the user's own plugin folders: the manual page and the
# completions are of what is installed.)
obnam="env -u OBNAM_PLUGIN_DIR $prefix/bin/obnam --no-default-configs"
# The installed obnam must load every plugin installed (a folder on the
# way that its group may write to, made before this ran, stops it).
refused=$($obnam plugins 2>&1 >/dev/null) || refused="$refused (obnam plugins failed)"
if [ -n "$refused" ]; then
    echo "install.sh: the installed obnam does not load its plugins:" >&2
    echo "$refused" >&2
    exit 1
fi
share=$prefix/share
mkdir -p "$share/man/man1" "$share/bash-completion/completions" \
    "$share/zsh/site-functions" "$share/fish/vendor_completions.d"
$obnam manpage >"$share/man/man1/obnam.1"
$obnam completions bash >"$share/bash-completion/completions/obnam"
$obnam completions zsh >"$share/zsh/site-functions/_obnam"
$obnam completions fish >"$share/fish/vendor_completions.d/obnam.fish"
echo "installed $prefix/bin/obnam and $found plugin(s) in $prefix/lib/obnam/plugins"
echo "installed the manual page and bash, zsh and fish completions in $share"
