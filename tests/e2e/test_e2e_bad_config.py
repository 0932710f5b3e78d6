"""Bad configuration through the real CLI: `pulumi preview` fails with the key path; nothing is created."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine]

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("gpus", {"container": {"gpus": "two"}}, "ghr:pools[0].container.gpus"),
    ("slots", {"slots": 0}, "ghr:pools[0].slots"),
    ("unknown-host", {"hosts": ["nowhere"]}, "ghr:pools[0].hosts[0]"),
    ("old-runner", {"image": {"runnerVersion": "2.300.0"}}, "ghr:pools[0].image.runnerVersion"),
    ("docker-socket", {"container": {"volumes": [{"type": "bind", "source": "/var/run/docker.sock",
                                                  "target": "/var/run/docker.sock"}]}},
     "ghr:pools[0].container.volumes[0].source"),
    ("scale-set-min-over-max", {"slots": None, "scaling": "scaleSet", "minRunners": 3, "maxRunners": 2},
     "ghr:pools[0].minRunners"),
    ("docker-dind-mirror-not-url", {"docker": "dind", "dind": {"registryMirrors": ["mirror.example:5000"]}},
     "ghr:pools[0].dind.registryMirrors[0]"),
    ("docker-host-without-unsafe-flag", {"docker": "host"}, "ghr:pools[0].docker"),
]


@pytest.fixture(scope="module")
def bad_stack(program_stack, emulator):
    stack = program_stack("bad")
    write_stack_config(stack, emulator)
    return stack


@pytest.mark.parametrize(("override", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preview_rejects_bad_config(bad_stack, emulator, override, path):
    """The preview fails, names the key path and creates no resource."""
    pool = {"name": "cpu", "hosts": ["local"], "slots": 2, "labels": ["self-hosted"], **override}
    pool = {key: value for key, value in pool.items() if value is not None}
    write_stack_config(bad_stack, emulator, pools=[pool])
    proc = bad_stack.preview(check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert path in out and "nothing was changed" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert not bad_stack.resources()


def test_preview_of_a_dind_pool_warns_and_plans_its_sidecar_image(bad_stack, emulator):
    """A valid dind pool previews: the privileged sidecar's cost is a warning, the sidecar image is planned, and
    nothing is created."""
    pool = {"name": "cpu", "hosts": ["local"], "slots": 1, "labels": ["self-hosted"], "docker": "dind",
            "dind": {"security": "caps"}}
    write_stack_config(bad_stack, emulator, pools=[pool])
    proc = bad_stack.preview(check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "privileged Docker engine" in " ".join(out.split()) and "fleet-cpu-local-image-dind" in out, out[-3000:]
    assert not bad_stack.resources()
