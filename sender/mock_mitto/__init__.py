"""A faithful stand-in for the Mitto SMS REST API (``sender mock-mitto``), with fault knobs.

Used by tests, the demo and the benchmarks; the contract is ``mitto-api.md``. Start it with
:func:`run_mock` (in-process), :class:`MockProcess` (a child process) or
``sender.mock_mitto.cli.main``.
"""

from sender.mock_mitto.config import DlrConfig, MockConfig
from sender.mock_mitto.harness import InProcessMock, MockAdmin, MockProcess, free_port, run_mock
from sender.mock_mitto.record import Message, MessageLog
from sender.mock_mitto.server import API_KEY_HEADER, MockServer, MockStats

__all__ = [
    "API_KEY_HEADER",
    "DlrConfig",
    "InProcessMock",
    "Message",
    "MessageLog",
    "MockAdmin",
    "MockConfig",
    "MockProcess",
    "MockServer",
    "MockStats",
    "free_port",
    "run_mock",
]
