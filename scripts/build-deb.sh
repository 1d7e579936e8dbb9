#!/usr/bin/env bash
# Builds a Debian package of criu and crit with their man pages and completions:
# target/debian/criu-rs_VERSION_ARCH.deb. It Provides, Conflicts with and Replaces Debian's
# criu, so installing it takes criu's place (apt-get install ./target/debian/criu-rs_*.deb).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
version=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"name":"criu","version":"\([^"]*\)".*/\1/p')
arch=$(dpkg --print-architecture)
out=target/debian
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -Dm755 target/release/criu "$root/usr/sbin/criu"
install -Dm755 target/release/crit "$root/usr/bin/crit"
install -Dm644 docs/man/criu.8 "$root/usr/share/man/man8/criu.8"
install -Dm644 docs/man/crit.1 "$root/usr/share/man/man1/crit.1"
gzip -9n "$root/usr/share/man/man8/criu.8" "$root/usr/share/man/man1/crit.1"
# bash-completion and fish load a completion by the command's name: one file serves both.
for cmd in criu crit; do
    install -Dm644 docs/completions/criu.bash "$root/usr/share/bash-completion/completions/$cmd"
    install -Dm644 docs/completions/criu.fish "$root/usr/share/fish/vendor_completions.d/$cmd.fish"
done
install -Dm644 docs/completions/_criu "$root/usr/share/zsh/vendor-completions/_criu"
install -Dm644 README.md "$root/usr/share/doc/criu-rs/README.md"

mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: criu-rs
Version: $version
Architecture: $arch
Maintainer: criu-rs developers <criu-rs@localhost>
Section: admin
Priority: optional
Depends: libc6
Recommends: iproute2, iptables | nftables
Provides: criu
Conflicts: criu
Replaces: criu
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Description: checkpoint/restore in userspace (CRIU-compatible, in Rust)
 criu freezes a running process tree or container and saves it as CRIU image files;
 criu restore makes it run again. It reads and writes CRIU's images, takes CRIU's
 command line and speaks CRIU's RPC, so runc and podman use it in place of CRIU.
CONTROL
mkdir -p "$out"
deb="$out/criu-rs_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
