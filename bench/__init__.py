"""Benchmarks: run from the repository root as modules, e.g. `python -m bench.bench_manager` (see toolchain/bench.sh)."""
