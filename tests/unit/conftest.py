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
