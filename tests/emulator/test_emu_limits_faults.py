"""Per-token primary rate limits and runtime fault injection."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from emu_helpers import Api

from emulator import Emulator


def test_rate_limit_headers_count_down_per_token(api: Api, emu: Emulator) -> None:
    """Each token has its own bucket; every answer carries the x-ratelimit-* headers."""
    other = emu.add_pat(None, ["admin:org"])
    h1 = api.get("/orgs/acme/actions/runners").headers
    h2 = api.get("/orgs/acme/actions/runners").headers
    h3 = api.get("/orgs/acme/actions/runners", token=other).headers
    assert (h1["x-ratelimit-limit"], h1["x-ratelimit-remaining"], h1["x-ratelimit-used"]) == ("5000", "4999", "1")
    assert (h2["x-ratelimit-remaining"], h2["x-ratelimit-used"]) == ("4998", "2")
    assert h3["x-ratelimit-remaining"] == "4999"
    assert h1["x-ratelimit-resource"] == "core" and int(h1["x-ratelimit-reset"]) > time.time()


@pytest.mark.parametrize("status", [403, 429])
def test_exhausted_primary_limit(status: int) -> None:
    """Past the limit: 403 (or 429) with remaining 0 until the window resets."""
    with Emulator(rate_limit=3, rate_limit_status=status) as emu:
        api = Api(emu, emu.admin_token)
        assert [api.get("/orgs/acme/actions/runners").status_code for _ in range(3)] == [200] * 3
        r = api.get("/orgs/acme/actions/runners")
        assert r.status_code == status
        assert r.headers["x-ratelimit-remaining"] == "0" and "rate limit exceeded" in r.json()["message"]
        emu.advance_clock(3601)
        r = api.get("/orgs/acme/actions/runners")
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "2"


def test_rate_limit_endpoint_does_not_count(api: Api) -> None:
    """GET /rate_limit reports the bucket without spending from it."""
    api.get("/orgs/acme/actions/runners")
    body = api.get("/rate_limit").json()
    assert body["resources"]["core"]["remaining"] == 4999 and body["rate"]["used"] == 1
    assert api.get("/rate_limit").json()["rate"]["used"] == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_burst_of_server_errors(api: Api, emu: Emulator, status: int) -> None:
    """errors=N: exactly the next N matching requests answer the 5xx, then service resumes."""
    emu.set_faults(errors=2, error_status=status)
    codes = [api.get("/orgs/acme/actions/runners").status_code for _ in range(3)]
    assert codes == [status, status, 200]


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit(api: Api, emu: Emulator, status: int) -> None:
    """secondary=N answers GitHub's secondary-rate-limit message with retry-after."""
    emu.set_faults(secondary=1, secondary_status=status, retry_after=7)
    r = api.get("/orgs/acme/actions/runners")
    assert r.status_code == status and r.headers["retry-after"] == "7"
    assert "secondary rate limit" in r.json()["message"]
    assert api.get("/orgs/acme/actions/runners").status_code == 200


def test_secondary_rate_limit_without_retry_after(api: Api, emu: Emulator) -> None:
    """retry_after=None leaves the header out (clients must wait at least a minute)."""
    emu.set_faults(secondary=1, retry_after=None)
    r = api.get("/orgs/acme/actions/runners")
    assert r.status_code == 403 and "retry-after" not in r.headers


def test_latency_is_added(api: Api, emu: Emulator) -> None:
    """latency delays matching requests."""
    emu.set_faults(latency=0.3)
    started = time.monotonic()
    assert api.get("/orgs/acme/actions/runners").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_decision_is_taken_when_the_request_arrives(api: Api, emu: Emulator) -> None:
    """Faults set while a request is in flight do not touch it; the next request gets them, as set."""
    emu.set_faults(latency=2)
    slow = Api(emu, emu.admin_token)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(slow.get, "/orgs/acme/actions/runners")
        time.sleep(0.5)
        emu.set_faults(secondary=1, secondary_status=429, retry_after=1)
        answered = in_flight.result(timeout=10)
    slow.s.close()
    assert answered.status_code == 200 and "retry-after" not in answered.headers
    r = api.get("/orgs/acme/actions/runners")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert api.get("/orgs/acme/actions/runners").status_code == 200


def test_dropped_connection(api: Api, emu: Emulator) -> None:
    """drop=N closes the socket without an answer."""
    emu.set_faults(drop=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.api_url + "/orgs/acme/actions/runners", timeout=5,
                     headers={"Authorization": f"Bearer {emu.admin_token}", "User-Agent": "t"})
    assert api.get("/orgs/acme/actions/runners").status_code == 200
    assert any(e.get("fault") == "drop" for e in emu.request_log())


def test_primary_exhaustion_fault(api: Api, emu: Emulator) -> None:
    """exhaust=True makes every bucket empty until cleared."""
    emu.set_faults(exhaust=True, primary_status=429)
    r = api.get("/orgs/acme/actions/runners")
    assert r.status_code == 429 and r.headers["x-ratelimit-remaining"] == "0"
    emu.clear_faults()
    assert api.get("/orgs/acme/actions/runners").status_code == 200


def test_faults_only_hit_matching_endpoints(api: Api, emu: Emulator) -> None:
    """match restricts faults to endpoints whose `METHOD template` contains it."""
    emu.set_faults(errors=5, match="generate-jitconfig")
    assert api.get("/orgs/acme/actions/runners").status_code == 200
    assert api.jit("/orgs/acme/actions", "x").status_code == 502


def test_faults_do_not_touch_the_control_api(api: Api, emu: Emulator) -> None:
    """The control API and downloads stay reliable under faults."""
    emu.set_faults(errors=100, drop=100)
    assert api.control("GET", "/jobs").status_code == 200
    assert requests.get(emu.download_url(), timeout=10).status_code == 200


def test_clear_faults(api: Api, emu: Emulator) -> None:
    """clear_faults stops every fault at once."""
    emu.set_faults(errors=10, secondary=10, latency=1.0)
    emu.clear_faults()
    assert api.get("/orgs/acme/actions/runners").status_code == 200
