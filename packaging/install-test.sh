#!/usr/bin/env bash
# Installs a built pipemedic .deb for real — dpkg, maintainer scripts,
# conffile handling, upgrade, remove, purge — into a throwaway copy of this
# machine: an overlay mount whose lower layer is / and whose writes land in a
# temporary directory, entered with chroot. This machine is not changed.
# Needs root (mount, chroot).
#
#   packaging/install-test.sh target/debian/pipemedic_*.deb
set -euo pipefail
deb=${1:?usage: install-test.sh PACKAGE.deb}
fail() { echo "install-test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root for the overlay mount and chroot (run the suite as root, as CI does)"
t=$(mktemp -d)
root=$t/root
cleanup() {
    for m in "$root/proc" "$root/dev" "$root"; do umount "$m" 2>/dev/null || true; done
    rm -rf "$t"
}
trap cleanup EXIT
mkdir -p "$t/upper" "$t/work" "$root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$root" \
    || fail "cannot mount an overlay of / (a kernel without overlayfs?)"
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
inside() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
if inside dpkg -s pipemedic >/dev/null 2>&1; then inside dpkg --purge pipemedic >/dev/null; fi
cp "$deb" "$root/tmp/pipemedic.deb"

# Install.
inside dpkg -i /tmp/pipemedic.deb >"$t/install.log" 2>&1 || fail "dpkg -i failed: $(cat "$t/install.log")"
inside dpkg -s pipemedic | grep -q '^Status: install ok installed' || fail "not installed"
[ -x "$root/usr/bin/pipemedic" ] || fail "no /usr/bin/pipemedic"
[ "$(stat -c %a "$root/var/lib/pipemedic")" = 700 ] || fail "/var/lib/pipemedic is not mode 0700"
[ -L "$root/etc/systemd/system/multi-user.target.wants/pipemedic.service" ] || fail "the unit is not enabled"
inside pipemedic check | grep -q ' 0 failed, ' || fail "the installed configuration and rules do not load"
inside pipemedic test --config /etc/pipemedic/pipemedic.toml | tail -1 | grep -q ' 0 failed' \
    || fail "the shipped rules' tests fail with the installed configuration"
out=$(inside systemd-analyze verify /usr/lib/systemd/system/pipemedic.service 2>&1 | grep -v 'sysinit.target\|Failed to create' || true)
[ -z "$out" ] || fail "systemd-analyze verify: $out"

# The installed agent runs as the unit would start it (dry-run, as shipped)
# and stops cleanly on SIGTERM.
inside timeout -s TERM 3 pipemedic run --config /etc/pipemedic/pipemedic.toml 2>"$t/run.log" || [ $? -eq 124 ] \
    || fail "the agent did not run: $(cat "$t/run.log")"
grep -q '"kind":"started"' "$root/var/lib/pipemedic/audit.jsonl" || fail "the agent did not start: $(cat "$t/run.log")"
grep -q '"kind":"stopped"' "$root/var/lib/pipemedic/audit.jsonl" || fail "the agent did not stop cleanly"

# Upgrade (the same package again): a local edit of the configuration stays.
echo '# edited on this host' >> "$root/etc/pipemedic/pipemedic.toml"
inside dpkg -i /tmp/pipemedic.deb >"$t/upgrade.log" 2>&1 || fail "upgrade failed: $(cat "$t/upgrade.log")"
grep -q '^# edited on this host' "$root/etc/pipemedic/pipemedic.toml" || fail "the upgrade overwrote the configuration"
[ -s "$root/var/lib/pipemedic/audit.jsonl" ] || fail "the upgrade lost the state"

# Remove keeps the configuration; purge removes it.
inside dpkg -r pipemedic >/dev/null 2>&1 || fail "dpkg -r failed"
[ ! -e "$root/usr/bin/pipemedic" ] || fail "the binary is still there after remove"
[ -e "$root/etc/pipemedic/pipemedic.toml" ] || fail "remove deleted the configuration"
inside dpkg -P pipemedic >/dev/null 2>&1 || fail "dpkg -P failed"
[ ! -e "$root/etc/pipemedic/pipemedic.toml" ] || fail "purge kept the configuration"
echo "install-test: $deb installs, runs, upgrades, removes and purges cleanly"
