import pulumi
import pytest
from unit_helpers import FleetMocks, RecordingMonitor


@pytest.fixture
def mocks():
    """Fresh Pulumi mocks for each test (preview=False so outputs are known); .monitor records requests."""
    m = FleetMocks()
    m.monitor = RecordingMonitor(m)
    pulumi.runtime.set_mocks(m, project="ghr", stack="unit", preview=False, monitor=m.monitor)
    yield m


@pytest.fixture
def emu():
    """A GitHub emulator on loopback for the provider tests."""
    from emulator import Emulator

    with Emulator() as e:
        yield e


@pytest.fixture
def gh(emu):
    from github_client import GitHubClient, PatAuth, parse_scope

    return GitHubClient(parse_scope(f"{emu.url}/acme"), PatAuth(emu.admin_token), max_retries=0)
