#!/usr/bin/env bash
# The tests need these programs from the system: redis-server, redis-cli (the
# Redis Cluster), rabbitmq-server
# (they start throwaway ones; Celery runs on both brokers), Graphviz's dot
# (drawings) and Chromium (the dashboard's browser test). Install Debian's
# packages for those missing, or say how.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || [ -n "${REDIS_URL:-}" ] || missing+=(redis-server)
# redis-cli joins the throwaway Redis Cluster's nodes (tests/_redis_cluster.py).
command -v redis-cli >/dev/null 2>&1 || command -v valkey-cli >/dev/null 2>&1 \
    || [ -n "${REDIS_CLUSTER_URL:-}" ] || missing+=(redis-tools)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 \
    || [ -n "${RABBITMQ_URL:-}" ] || missing+=(rabbitmq-server)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages the tests need: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "the tests need: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
