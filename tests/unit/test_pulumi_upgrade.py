"""Upgrades: providers that earlier versions pickled into stack state unpickle into today's classes.

The blobs are what `serialize_provider` wrote at commit ffb66a7 (before issue 8 moved the providers'
helpers; the readiness provider was then a subclass of the registration provider). A stack's
`refresh` and `destroy` unpickle exactly these with the code that runs them. The real-engine
version of this check is tests/e2e/test_e2e_upgrade.py.
"""

from __future__ import annotations

import base64

import dill
import pytest

RECORDED_AT_FFB66A7 = {
    "components.registration.RunnerRegistrationProvider":
        "gASVQAAAAAAAAACMF2NvbXBvbmVudHMucmVnaXN0cmF0aW9ulIwaUnVubmVyUmVnaXN0cmF0aW9uUHJvdmlkZXKUk5QpgZR9lGIu",
    "components.readiness.RunnerPoolReadyProvider":
        "gASVOgAAAAAAAACMFGNvbXBvbmVudHMucmVhZGluZXNzlIwXUnVubmVyUG9vbFJlYWR5UHJvdmlkZXKUk5QpgZR9lGIu",
    "components.docker._container.DockerContainerProvider":
        "gASVPwAAAAAAAACMHGNvbXBvbmVudHMuZG9ja2VyLl9jb250YWluZXKUjBdEb2NrZXJDb250YWluZXJQcm92aWRlcpSTlCmBlC4=",
    "components.docker._image.DockerImageProvider":
        "gASVNwAAAAAAAACMGGNvbXBvbmVudHMuZG9ja2VyLl9pbWFnZZSME0RvY2tlckltYWdlUHJvdmlkZXKUk5QpgZQu",
}


@pytest.mark.parametrize("path", sorted(RECORDED_AT_FFB66A7))
def test_an_old_pickled_provider_loads_into_todays_class(path: str) -> None:
    """The class is still importable at its recorded path, accepts the old state, and works."""
    provider = dill.loads(base64.b64decode(RECORDED_AT_FFB66A7[path]))
    assert f"{type(provider).__module__}.{type(provider).__name__}" == path
    assert provider.check({}, {}).failures is not None
    assert provider.diff("id", {}, {}).changes is False


def test_the_readiness_provider_no_longer_inherits_from_the_registration_provider() -> None:
    """RunnerPoolReadyProvider shares helpers as functions, not through a base class."""
    from components.readiness import RunnerPoolReadyProvider
    from components.registration import RunnerRegistrationProvider

    assert not issubclass(RunnerPoolReadyProvider, RunnerRegistrationProvider)
