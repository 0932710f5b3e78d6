"""The chaos drill at size: jobs through a pool while the manager, its runners, GitHub and the engine fail.

    .venv/bin/python -m bench.bench_chaos [--jobs 60] [--slots 4] [--faults 12] [--seed 1]

Runs tests/manager/chaos_drill.py twice on a second Docker engine that it starts itself: first the same
jobs with no fault (the baseline), then with --faults faults drawn (seeded) from every kind: `docker kill` of
busy runners, SIGKILL of the manager, 5xx, 429 with retry-after, dropped connections, latency, an engine
restart. Prints what must be zero whatever the faults (jobs lost, run twice, registrations, containers and
volumes left after the drain) and the drill's wall time as a ratio to the baseline. Exit 1 if any of the
zeros is not. Needs the local Docker engine and base image (make setup); talks only to loopback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import docker

from emulator import Emulator
from tests._support.second_engine import SecondEngine, missing_prerequisites
from tests.manager.chaos_drill import FAULTS, Drill, schedule
from tests.manager.mgr_helpers import ensure_runner_image


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--faults", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    problem = missing_prerequisites()
    if problem:
        print(f"bench_chaos: {problem}", file=sys.stderr)
        return 1
    with Emulator() as emu:
        image = ensure_runner_image(docker.from_env(timeout=600), emu)
    faults = schedule(FAULTS, args.faults, args.seed)
    engine = SecondEngine()
    try:
        engine.start()
        engine.load_image(image)
        with tempfile.TemporaryDirectory(prefix="ghr-chaos-") as tmp:
            with Drill(engine, image, Path(tmp) / "baseline", slots=args.slots, seed=args.seed) as drill:
                base = drill.run(args.jobs, [])
            with Drill(engine, image, Path(tmp) / "chaos", slots=args.slots, seed=args.seed) as drill:
                chaos = drill.run(args.jobs, faults)
    finally:
        engine.close()
    print(f"baseline (no fault): {base.summary()}")
    print(f"chaos ({len(faults)} faults, seed {args.seed}): {chaos.summary()}")
    print(f"jobs lost: {len(chaos.lost)}  run twice: {len(chaos.ran_twice)}  "
          f"left after the drain: {sum(len(v) for v in chaos.orphans.values())}")
    print(f"wall time: {chaos.seconds:.1f} s vs {base.seconds:.1f} s without faults = "
          f"{chaos.seconds / base.seconds:.2f}x; jobs that a fault killed: {chaos.failed_by_fault}/{chaos.jobs}")
    if not (base.clean and chaos.clean):
        print(f"NOT CLEAN: lost={chaos.lost} ran_twice={chaos.ran_twice} orphans={chaos.orphans}\n{chaos.log_tail}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
