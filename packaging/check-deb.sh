#!/usr/bin/env bash
# Checks a built pipemedic .deb without installing it on this machine:
# its control data (conffile, maintainer scripts), its contents, and — in a
# throwaway root it is unpacked into — that the shipped binary loads the
# shipped configuration, rules and playbooks and passes the rules' own
# tests, that systemd accepts the unit and logrotate its configuration.
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

# The shipped configuration, pointed into the throwaway root.
sed -e "s|/usr/share/pipemedic|$fs/usr/share/pipemedic|g" -e "s|/etc/pipemedic|$fs/etc/pipemedic|g" \
    -e "s|/var/lib/pipemedic|$root/state|g" "$fs/etc/pipemedic/pipemedic.toml" > "$root/pipemedic.toml"
"$fs/usr/bin/pipemedic" check --config "$root/pipemedic.toml" | tee "$root/check.out"
grep -q ' 0 failed, ' "$root/check.out" || fail "a shipped rule failed to load"
grep -q 'playbook(s) compiled, 0 failed' "$root/check.out" || fail "a shipped playbook failed to compile"
"$fs/usr/bin/pipemedic" test --config "$root/pipemedic.toml" | tail -1 | grep -q ' passed, 0 failed' \
    || fail "the shipped rules' tests fail with the shipped configuration"

# systemd checks that ExecStart exists: verify a copy pointing at the unpacked binary.
sed "s|/usr/bin/pipemedic|$fs/usr/bin/pipemedic|g" "$fs/usr/lib/systemd/system/pipemedic.service" \
    > "$root/pipemedic.service"
out=$(systemd-analyze verify "$root/pipemedic.service" 2>&1 | grep -v 'sysinit.target\|Failed to create' || true)
[ -z "$out" ] || fail "systemd-analyze verify: $out"
grep -qx 'KillMode=process' "$root/pipemedic.service" || fail "the unit would signal the services the agent started"

logrotate --debug --state "$root/logrotate.state" "$fs/etc/logrotate.d/pipemedic" >/dev/null 2>"$root/logrotate.err" \
    || fail "logrotate rejects its configuration: $(cat "$root/logrotate.err")"
echo "check-deb: $deb is good"
