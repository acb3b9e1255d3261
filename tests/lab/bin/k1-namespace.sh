#!/usr/bin/env bash
# Runs COMMAND… as a host named NAME whose /etc/hosts is HOSTS_FILE, inside
# the private mount and UTS namespace `unshare --mount --uts` made for it
# (runbook K1 in the lab): the machine's /etc/hosts and name do not change.
#   unshare --mount --uts k1-namespace.sh HOSTS_FILE NAME COMMAND…
set -euo pipefail
hosts=$1 name=$2
shift 2
mount --bind "$hosts" /etc/hosts
hostname "$name"
exec "$@"
