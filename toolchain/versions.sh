# shellcheck shell=bash
# Pinned toolchain versions (see README, "Pinned versions"). Sourced by the other scripts.
# shellcheck disable=SC2034 # used by the scripts that source this file
PULUMI_VER=3.274.1   # CLI; the Python SDK pin (pulumi==3.272.0) lives in requirements.txt
