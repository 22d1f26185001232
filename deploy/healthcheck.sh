#!/usr/bin/env bash
# The container's health check: GET /health on the broker's admin listener
# (SLUICE_ADMIN_LISTEN, default 127.0.0.1:9644), healthy on HTTP 200. Bash
# alone (its /dev/tcp), so the image needs no curl or wget.
# Usage: sluice-healthcheck [host:port]
set -uo pipefail
addr=${1:-${SLUICE_ADMIN_LISTEN:-127.0.0.1:9644}}
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
# A listener on every interface is asked on loopback.
case "$host" in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
esac
if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "unhealthy: nothing listens on $host:$port" >&2
    exit 1
fi
printf 'GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t 4 status <&3 || true
status=${status%$'\r'}
case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "unhealthy: GET /health on $host:$port answered '${status:-nothing}'" >&2
exit 1
