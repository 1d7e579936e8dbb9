#!/usr/bin/env bash
# Installs the package from build-deb.sh in place of Debian's criu, runs `criu check`, the
# man pages and the README's demo with the installed binaries, removes it, checks that
# nothing of it is left, and puts Debian's criu back if it was there (the tests use its crit).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
deb=$(bash scripts/build-deb.sh | tail -n1)
had_criu=no
dpkg -s criu >/dev/null 2>&1 && had_criu=yes
restore_debian_criu() {
    dpkg -s criu-rs >/dev/null 2>&1 && apt-get remove -y -q criu-rs >/dev/null
    if [ "$had_criu" = yes ]; then apt-get install -y -q criu >/dev/null; fi
}
trap restore_debian_criu EXIT

apt-get install -y -q "./$deb" >/dev/null
echo "== installed $(dpkg-query -W -f '${Package} ${Version}' criu-rs)"
[ "$(command -v criu)" = /usr/sbin/criu ] && [ "$(command -v crit)" = /usr/bin/crit ]
/usr/sbin/criu --version | grep -q "GitID: criu-rs"
/usr/sbin/criu check --no-default-config || echo "(criu check exited $?)"
man -w criu | grep -q /usr/share/man/man8/criu.8
man -w crit | grep -q /usr/share/man/man1/crit.1
CRIU=/usr/sbin/criu CRIT=/usr/bin/crit bash scripts/demo.sh >/dev/null
echo "== the demo ran with the installed criu"

files=$(dpkg -L criu-rs | grep -v '/$' || true)
apt-get remove -y -q criu-rs >/dev/null
for f in $files; do
    if [ -f "$f" ]; then echo "left behind after removal: $f"; exit 1; fi
done
echo "== removed cleanly"
