#!/bin/bash
# Stand-in for actions/runner's run.sh: runs the listener, forwards SIGTERM/SIGINT to it, re-launches it
# on retryable exit codes (a bounded number of times) and, like the real one, exits 0 for the others.
RUNNER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$RUNNER_ROOT" || exit 1
max_attempts=${RUNNER_MAX_RELAUNCH:-20}
attempt=0
pid=
forward() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; signalled=1; }
trap forward TERM INT

while :; do
    signalled=
    "$RUNNER_ROOT/bin/Runner.Listener" run "$@" &
    pid=$!
    wait "$pid"; rc=$?
    # A trapped signal interrupts `wait`; wait again for the listener's own exit code (bash keeps it).
    while [ -n "$signalled" ]; do
        signalled=
        wait "$pid"; rc=$?
    done
    pid=
    case $rc in
        0) echo "Runner listener exit with 0 return code, stop the service, no retry needed."; exit 0 ;;
        1) echo "Runner listener exit with terminated error, stop the service, no retry needed."; exit 0 ;;
        2|3|4)
            attempt=$((attempt + 1))
            if [ "$attempt" -ge "$max_attempts" ]; then
                echo "Runner listener exit with retryable error $rc $attempt times; giving up."
                exit 2
            fi
            echo "Runner listener exit with retryable error, re-launch runner in 5 seconds."
            sleep 5 ;;
        5) echo "Runner listener exit with Session Conflict error, stop the service, no retry needed."; exit 0 ;;
        *) echo "Exiting with unknown error code: ${rc}"; exit 0 ;;
    esac
done
