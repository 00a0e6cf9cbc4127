"""CLI commands: `labctl lab up|down|status` — the built-in four-host namespace lab."""

from __future__ import annotations

import json
import time
from typing import Optional

import typer

from labctl.cli.app import app
from labctl.cli.help import Typer
from labctl.errors import ExitCode
from labctl.lab import LabInfo, LabSpec, LabStatus, build_lab, destroy_lab, lab_status
from labctl.lab.inventory import TOPOLOGIES, remove_lab_inventories, write_lab_inventory
from labctl.lab.spec import MAX_ONLINE

DEFAULT_NAME = "demo"  # inventories/local.yaml describes this lab at index 1
NAME_HELP = ("Lab name: 1-8 characters, a lowercase letter then lowercase letters or digits. "
             "Several labs can exist side by side.")

lab_app = Typer(
    name="lab", help="The built-in local lab: client, online, target and assistant in network "
    "namespaces, with real sshd and nginx.", no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")


@lab_app.command("up")
def up(
    name: str = typer.Option(DEFAULT_NAME, "--name", "-n", help=NAME_HELP),
    index: Optional[int] = typer.Option(
        None, "--index", help="Force lab index N (10.77-79.N.0/24); default: first free one."),
    as_json: bool = typer.Option(False, "--json", help="Print the lab (lab.json contents plus "
                                 "the inventory paths and build time) as JSON."),
    online: int = typer.Option(1, "--online", min=1, max=MAX_ONLINE, metavar="N",
                               help="Online servers: 1 to 16 (`online2` at .11, `onlineK` at "
                                    ".100+K: several online servers copied to one target, each "
                                    "with its own share of the fake-client pool)."),
    targets: int = typer.Option(1, "--targets", min=1, max=2, metavar="N",
                                help="Targets: 1, or 2 (`target2` at .21: every session copied "
                                     "to both; the inventory names them baseline and "
                                     "candidate)."),
) -> None:
    """Build the lab (well under 5 s) and print its hosts, addresses and lab.json path."""
    t0 = time.monotonic()
    info = build_lab(LabSpec(name=name, index=index, online_hosts=online, targets=targets))
    paths = [write_lab_inventory(info, topology)[0] for topology in TOPOLOGIES]
    if as_json:
        doc = {**info.to_dict(), "seconds": round(time.monotonic() - t0, 3),
               "inventories": {t: str(p) for t, p in zip(TOPOLOGIES, paths)}}
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(render_up(info, time.monotonic() - t0))
    typer.echo(f"inventory:  {paths[0]}\n            {paths[1]} (two-server)")
    typer.echo(f"next:       labctl up {paths[0]}")


@lab_app.command("down")
def down(
    name: str = typer.Option(DEFAULT_NAME, "--name", "-n", help=NAME_HELP),
    as_json: bool = typer.Option(False, "--json", help='Print {"name", "destroyed"} as JSON.'),
) -> None:
    """Stop the lab's processes, delete its namespaces, links and files. Safe to run twice."""
    found = destroy_lab(name)
    found = bool(remove_lab_inventories(name)) or found
    if as_json:
        typer.echo(json.dumps({"name": name, "destroyed": found}))
        return
    typer.echo(f"lab {name}: destroyed" if found else f"lab {name}: nothing to remove")


@lab_app.command("status")
def status(
    name: str = typer.Option(DEFAULT_NAME, "--name", "-n", help=NAME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show hosts, addresses, services (pid alive, port listening) and whether each is up."""
    st = lab_status(name)
    typer.echo(json.dumps(st.to_dict(), indent=2) if as_json else render_status(st))
    if not st.up:
        raise typer.Exit(int(ExitCode.ERROR))


def render_up(info: LabInfo, seconds: float) -> str:
    lines = [f"lab {info.name} is up (index {info.index}, {seconds:.2f}s)"]
    lines.append(f"  {'operator':<10} {info.operator_address:<12} dev {info.operator_ifname}")
    for h in info.hosts.values():
        extra = f" (+{len(h.extra_addresses)} more)" if h.extra_addresses else ""
        lines.append(f"  {h.role:<10} {h.address:<12} netns {h.netns}{extra}")
    lines.append(f"ssh:        ssh -i {info.ssh_key} -o UserKnownHostsFile={info.known_hosts} "
                 f"-o StrictHostKeyChecking=yes root@{info.hosts['online'].address}")
    lines.append(f"lab.json:   {info.json_path}")
    return "\n".join(lines)


def render_status(st: LabStatus) -> str:
    info = st.info
    state = "up" if st.up else "DOWN"
    lines = [f"lab {info.name} (index {info.index}): {state}",
             f"  {'operator':<10} {info.operator_address:<12} dev {info.operator_ifname} "
             f"{'present' if st.operator_link else 'MISSING'}"]
    for h in st.hosts:
        svcs = ", ".join(
            f"{s.name}[{s.pid or '-'}] {'listening :' + str(s.port) if s.listening else 'DOWN'}"
            for s in h.services) or "-"
        ns = "" if h.netns_present else " (netns MISSING)"
        lines.append(f"  {h.role:<10} {h.address:<12} {'up' if h.up else 'DOWN':<4} "
                     f"{svcs}{ns}")
    lines.append(f"lab.json:   {info.json_path}")
    return "\n".join(lines)
