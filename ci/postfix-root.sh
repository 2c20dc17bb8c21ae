#!/usr/bin/env bash
# A Debian 13 (trixie) root tree holding Postfix 3.10 from Debian's own packages, for the e2e
# tests of what only Postfix >= 3.10 does (TLSRPT attributes, smtp_tls_enforce_sts_mx_patterns).
# Usage: ci/postfix-root.sh [DIR]   (default /var/cache/mtasts-e2e/trixie; about 280 MB, 1-2 min)
set -euo pipefail
DIR=${1:-/var/cache/mtasts-e2e/trixie}
if [ -x "$DIR/usr/sbin/postfix" ]; then
    echo "$DIR: $(chroot "$DIR" postconf -d -h mail_version) already there"
    exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
# The mirror this machine's apt already uses.
MIRROR=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -e security -e snapshot | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
rm -rf "$DIR.tmp"
mkdir -p "$(dirname "$DIR")"
debootstrap --variant=minbase --include=postfix,ca-certificates trixie "$DIR.tmp" "$MIRROR" >"$DIR.log" 2>&1 \
    || { tail -20 "$DIR.log"; exit 1; }
mv "$DIR.tmp" "$DIR"
echo "$DIR: Postfix $(chroot "$DIR" postconf -d -h mail_version)"
