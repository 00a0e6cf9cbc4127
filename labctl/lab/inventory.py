"""The inventory of a built-in lab: rendered from templates/inventory/local.yaml.j2 and written
where `up`, `verify` and `down` find it (`<local state>/<lab>/inventory*.yaml`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import jinja2

from labctl.hosts.journal import local_lab_dir
from labctl.lab.spec import ONLINE_ROLES, LabInfo

TOPOLOGIES = ("three-server", "two-server")
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "inventory"


def render_lab_inventory(info: LabInfo, topology: str = "three-server") -> str:
    """Inventory YAML for a local lab; pure: reads only the template.

    The result always validates (`labctl.inventory.load.parse_inventory`); `topology` may be
    `two-server`.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    lab_net = ipaddress.IPv4Network(str(info.lab_net))
    pool_prefix = str(ipaddress.IPv4Network(str(info.fake_pool)).network_address).rsplit(".", 1)[0]
    return env.get_template("local.yaml.j2").render(
        info=info,
        hosts=info.hosts,
        onlines=[h for role, h in info.hosts.items() if role in ONLINE_ROLES],
        topology=topology,
        pool=f"{pool_prefix}.x",
        lab_net=lab_net,
        state_dir=str(Path(info.dir) / "state"),
    )


def lab_inventory_path(name: str, topology: str = "three-server") -> Path:
    """`<local state>/<lab>/inventory.yaml` (three-server) or `inventory-two-server.yaml`."""
    file = "inventory.yaml" if topology == "three-server" else f"inventory-{topology}.yaml"
    return local_lab_dir(name) / file


def write_lab_inventory(info: LabInfo, topology: str = "three-server") -> tuple[Path, str]:
    """Render the inventory of lab `info` for `topology`, write it, return (path, text)."""
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
