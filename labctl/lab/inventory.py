"""The inventory of a built-in lab, written where `up`, `verify` and `down` find it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOPOLOGIES = ("three-server", "two-server")


def lab_inventory_path(name: str, topology: str = "three-server") -> Path:
    """`<local state>/<lab>/inventory.yaml` (three-server) or `inventory-two-server.yaml`."""
    from labctl.up.journal import local_lab_dir

    file = "inventory.yaml" if topology == "three-server" else f"inventory-{topology}.yaml"
    return local_lab_dir(name) / file


def write_lab_inventory(info: Any, topology: str = "three-server") -> tuple[Path, str]:
    """Render the inventory of lab `info` for `topology`, write it, return (path, text)."""
    from labctl.inventory.load import render_lab_inventory

    text = render_lab_inventory(info, topology=topology)
    path = lab_inventory_path(info.name, topology)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path, text


def remove_lab_inventories(name: str) -> list[Path]:
    """Delete the inventories `write_lab_inventory` wrote for lab `name` (and the dir if empty)."""
    removed = []
    for topology in TOPOLOGIES:
        path = lab_inventory_path(name, topology)
        if path.exists():
            path.unlink()
            removed.append(path)
    parent = lab_inventory_path(name).parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
    return removed
