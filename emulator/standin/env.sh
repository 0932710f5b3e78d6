#!/bin/bash
# Stand-in for actions/runner's env.sh: records PATH and a few variables in .path and .env.
RUNNER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
echo "$PATH" > "$RUNNER_ROOT/.path"
: > "$RUNNER_ROOT/.env"
for var in LANG JAVA_HOME ANT_HOME M2_HOME ANDROID_HOME GRADLE_HOME NVM_BIN NVM_PATH LD_LIBRARY_PATH PERL5LIB; do
    value="${!var}"
    [ -n "$value" ] && echo "$var=$value" >> "$RUNNER_ROOT/.env"
done
exit 0
