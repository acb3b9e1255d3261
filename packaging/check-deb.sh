#!/usr/bin/env bash
# Checks a built pipemedic .deb without installing it (no root needed): its
# control data (conffile, maintainer scripts), its contents and modes, the
# unit's KillMode and that logrotate accepts its configuration. That the
# installed package works — configuration and rules load, systemd accepts the
# unit, the agent runs, upgrade, removal — is install-test.sh's part.
#
#   packaging/check-deb.sh target/debian/pipemedic_*.deb
set -euo pipefail
deb=${1:?usage: check-deb.sh PACKAGE.deb}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "check-deb: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)

dpkg-deb --info "$deb" >/dev/null || fail "$deb is not a Debian package"
mkdir "$root/control"
dpkg-deb --control "$deb" "$root/control"
grep -qx /etc/pipemedic/pipemedic.toml "$root/control/conffiles" || fail "the configuration is not a conffile"
grep -q deb-systemd-helper "$root/control/postinst" || fail "postinst does not enable the unit"
grep -q 'chmod 0700 /var/lib/pipemedic' "$root/control/postinst" || fail "postinst does not create the state directory"

dpkg-deb --extract "$deb" "$root/fs"
fs="$root/fs"
for f in usr/bin/pipemedic etc/pipemedic/pipemedic.toml etc/pipemedic/rules.d/README \
         usr/lib/systemd/system/pipemedic.service etc/logrotate.d/pipemedic \
         usr/share/doc/pipemedic/README.md usr/share/doc/pipemedic/runbook-coverage.md; do
    [ -e "$fs/$f" ] || fail "missing /$f"
done
for r in "$here"/rules/*.rhai "$here"/playbooks/*.rhai; do
    kind=$(basename "$(dirname "$r")")
    [ -e "$fs/usr/share/pipemedic/$kind/$(basename "$r")" ] || fail "missing /usr/share/pipemedic/$kind/$(basename "$r")"
done
[ "$(stat -c %a "$fs/etc/pipemedic/pipemedic.toml")" = 640 ] || fail "the configuration is not mode 0640"
grep -qx 'dry_run = true' "$fs/etc/pipemedic/pipemedic.toml" || fail "the shipped configuration is not dry-run"

grep -qx 'KillMode=process' "$fs/usr/lib/systemd/system/pipemedic.service" || fail "the unit would signal the services the agent started"
grep -q '^LimitNOFILE=' "$fs/usr/lib/systemd/system/pipemedic.service" || fail "the unit sets no LimitNOFILE"

logrotate --debug --state "$root/logrotate.state" "$fs/etc/logrotate.d/pipemedic" >/dev/null 2>"$root/logrotate.err" \
    || fail "logrotate rejects its configuration: $(cat "$root/logrotate.err")"
echo "check-deb: $deb is good"
