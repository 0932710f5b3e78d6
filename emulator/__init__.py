"""GitHub emulator (loopback HTTP server + control API) and the stand-in runner tarball."""

from ._contract import Faults
from ._emulator import Emulator
from ._state import RUNNER_VERSION

__all__ = ["Emulator", "Faults", "RUNNER_VERSION"]
