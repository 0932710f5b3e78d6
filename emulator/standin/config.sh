#!/bin/bash
# Stand-in for actions/runner's config.sh: same arguments (see bin/Runner.Listener), same root refusal.
user_id=$(id -u)
if [ "$user_id" -eq 0 ] && [ -z "$RUNNER_ALLOW_RUNASROOT" ]; then
    echo "Must not run with sudo"
    exit 1
fi

RUNNER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$RUNNER_ROOT" || exit 1
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing: run ./bin/installdependencies.sh as root first"
    exit 1
fi

# Snapshot the environment like the real runner does at configuration time.
"$RUNNER_ROOT/env.sh" >/dev/null

if [ "$1" = "remove" ]; then
    shift
    exec "$RUNNER_ROOT/bin/Runner.Listener" remove "$@"
fi
exec "$RUNNER_ROOT/bin/Runner.Listener" configure "$@"
