"""The local lab: four hosts (client, online, target, assistant) in network namespaces.

    info = build_lab(LabSpec(name="t1"))
    ...
    destroy_lab("t1")
"""

from __future__ import annotations

from labctl.lab.build import (
    HostStatus,
    LabStatus,
    ServiceStatus,
    build_lab,
    destroy_lab,
    lab_status,
    list_labs,
    load_lab,
)
from labctl.lab.spec import DEFAULT_BASE_DIR, HostInfo, LabInfo, LabSpec, plan_lab

__all__ = [
    "DEFAULT_BASE_DIR",
    "HostInfo",
    "HostStatus",
    "LabInfo",
    "LabSpec",
    "LabStatus",
    "ServiceStatus",
    "build_lab",
    "destroy_lab",
    "lab_status",
    "list_labs",
    "load_lab",
    "plan_lab",
]
