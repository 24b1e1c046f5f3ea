#!/usr/bin/env bash
# The tests start their own throwaway redis-server; install Debian's when missing.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing: installing Debian's package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
else
    echo "redis-server is missing: install it (Debian: sudo apt-get install redis-server)" \
         "or set REDIS_URL to a Redis you can use for tests" >&2
    [ -n "${REDIS_URL:-}" ] || exit 1
fi
