#!/bin/bash
# Stand-in for actions/runner's bin/installdependencies.sh (run as root at image build time):
# the stand-in listener is Python 3 (standard library only); git, curl and CA certificates are for jobs.
set -u
if [ "$(id -u)" -ne 0 ]; then
    echo "Need to run with sudo privilege"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Can't detect a supported package manager (apt-get) on this system."
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do
    if apt-get update && apt-get install -y --no-install-recommends python3 ca-certificates git curl; then
        echo "-----------------------------"
        echo " Finish Install Dependencies"
        echo "-----------------------------"
        exit 0
    fi
    echo "'apt-get install' failed (attempt $attempt), retrying in 10 seconds"
    sleep 10
done
echo "'apt-get install' failed three times; giving up."
exit 1
