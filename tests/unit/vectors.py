"""The C tools' wire captures (``tests/fixtures/vectors``), read relative to this file.

A missing vector is a test FAILURE, not a skip: the C-interop golden tests must run on a clean
checkout (CI included), never silently pass by not running.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from engine.pcapfile import read_pcap

VECTORS = Path(__file__).resolve().parent.parent / "fixtures" / "vectors"
NAMES = ["c-target-copied-traffic", "c-online-client-traffic", "c-intercept-channel",
         "c-target-faked-handshake", "c-intercept-channel-faked-handshake"]


def vector_path(name: str) -> Path:
    """Path of ``<name>.pcap``; fails the calling test if the fixture is missing."""
    path = VECTORS / f"{name}.pcap"
    if not path.is_file():
        pytest.fail(f"test vector {path} is missing (tests/fixtures/vectors is part of the repo)")
    return path


def vector_frames(name: str) -> List[bytes]:
    """Every captured frame (Ethernet) of one vector, in file order."""
    return [r.data for r in read_pcap(str(vector_path(name))).records]
