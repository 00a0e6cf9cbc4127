"""Many hosts at once: connect in parallel, run one function per host, keep every outcome.

    with HostPool.open(inventory) as pool:           # SSH to every host, in parallel
        outcomes = pool.each(lambda spec, t: t.run(["uname", "-r"]).check().stdout)
        for name, outcome in outcomes.items(): ...    # one Outcome per host, failures included

Tests pass `factory=lambda spec: fakes[spec.name]`. `parallel` bounds how many hosts are worked
on at once (`--parallel N`, default `MAX_WORKERS`); `watch(host, phase, state)` hears each host
start ("running") and end ("ok" / "failed") every phase named in `each(..., phase=...)` (the CLI's
live per-host table).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar

from labctl.errors import LabctlError, RemoteError
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Transport

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

#: Hosts worked on at once unless `--parallel N` says otherwise.
MAX_WORKERS = 32
Factory = Callable[[HostSpec], Transport]
#: watch(host, phase, state): state is "running", "ok" or "failed".
Watch = Callable[[str, str, str], None]


def _unwatched(host: str, phase: str, state: str) -> None:
    """The default watcher: hears nothing."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one host's step produced: a value, or the error that stopped it."""

    host: str
    value: Optional[T] = None
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value, or re-raise the host's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def run_parallel(items: Mapping[str, V], fn: Callable[[V], T],
                 max_workers: int = MAX_WORKERS) -> dict[str, Outcome[T]]:
    """`fn(item)` for every item in parallel; one Outcome per key, in the mapping's order.

    Only labctl errors and OS errors become failed outcomes; programming errors (including a
    FakeTransport's UnscriptedCommand) propagate so tests see them.
    """
    if not items:
        return {}

    def one(key: str, item: V) -> Outcome[T]:
        try:
            return Outcome(key, value=fn(item))
        except (LabctlError, OSError) as exc:
            return Outcome(key, error=exc)

    workers = max(1, min(max_workers, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labctl-host") as ex:
        futures = {key: ex.submit(one, key, item) for key, item in items.items()}
        return {key: fut.result() for key, fut in futures.items()}


def ssh_factory(inventory: Inventory) -> Factory:
    from labctl.transport.ssh import SSHTransport  # lazy: paramiko (~0.06 s); fakes don't
    from labctl.transport.sshroute import load_ssh_config  # lazy: need it (paramiko)

    config = load_ssh_config(inventory.ssh)     # once for every host; errors name the file
    return lambda spec: SSHTransport(spec, inventory.ssh, config)


def watched(fn: Callable[[V], T], watch: Watch, phase: str,
            host_of: Callable[[V], str]) -> Callable[[V], T]:
    """`fn`, telling `watch` when each host starts and ends `phase`."""
    def run(item: V) -> T:
        host = host_of(item)
        watch(host, phase, "running")
        try:
            value = fn(item)
        except BaseException:
            watch(host, phase, "failed")
            raise
        watch(host, phase, "ok")
        return value

    return run


class HostPool:
    """One transport per inventory host, reused for a whole run."""

    def __init__(self, inventory: Inventory, factory: Optional[Factory] = None,
                 parallel: Optional[int] = None, watch: Optional[Watch] = None):
        self.inventory = inventory
        self._factory = factory or ssh_factory(inventory)
        self.specs: dict[str, HostSpec] = {h.name: h for h in inventory.all_hosts()}
        self.transports: dict[str, Transport] = {}
        self.parallel = max(1, parallel or MAX_WORKERS)
        self.watch: Watch = watch or _unwatched

    @classmethod
    def open(cls, inventory: Inventory, factory: Optional[Factory] = None,
             parallel: Optional[int] = None, watch: Optional[Watch] = None) -> HostPool:
        """Connect to every host in parallel; raises one RemoteError listing every failure."""
        pool = cls(inventory, factory, parallel, watch)
        failed = [o for o in pool.connect_all().values() if not o.ok]
        if failed:
            pool.close()
            raise _combined(failed)
        return pool

    def connect_all(self) -> dict[str, Outcome[None]]:
        """Connect every host that is not connected yet; one Outcome per host."""
        def connect(spec: HostSpec) -> None:
            transport = self.transports.get(spec.name) or self._factory(spec)
            connect_fn = getattr(transport, "connect", None)
            if connect_fn is not None:
                connect_fn()
            self.transports[spec.name] = transport

        return self.run(self.specs, connect, "connect", lambda spec: spec.name)

    def run(self, items: Mapping[str, V], fn: Callable[[V], T], phase: Optional[str] = None,
            host_of: Optional[Callable[[V], str]] = None) -> dict[str, Outcome[T]]:
        """`run_parallel` within this pool's bound, watched as `phase` when one is named."""
        if phase is not None and host_of is not None:
            fn = watched(fn, self.watch, phase, host_of)
        return run_parallel(items, fn, self.parallel)

    def transport(self, name: str) -> Transport:
        if name not in self.transports:
            transport = self._factory(self.specs[name])
            self.transports[name] = transport
        return self.transports[name]

    def each(self, fn: Callable[[HostSpec, Transport], T],
             hosts: Optional[list[str]] = None,
             phase: Optional[str] = None) -> dict[str, Outcome[T]]:
        """`fn(spec, transport)` on every (or the named) host in parallel (watched as `phase`)."""
        names = hosts if hosts is not None else list(self.specs)
        chosen = {n: self.specs[n] for n in names}
        return self.run(chosen, lambda spec: fn(spec, self.transport(spec.name)), phase,
                        lambda spec: spec.name)

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _combined(failed: list[Outcome[Any]]) -> RemoteError:
    if len(failed) == 1 and isinstance(failed[0].error, LabctlError):
        err = failed[0].error
        return RemoteError(err.message, hint=err.hint, host=err.host or failed[0].host)
    lines = [f"[{o.host}] {getattr(o.error, 'message', o.error)}" for o in failed]
    hints = {getattr(o.error, "hint", None) for o in failed} - {None}
    return RemoteError(
        f"cannot connect to {len(failed)} hosts:\n  " + "\n  ".join(lines),
        hint="; ".join(sorted(h for h in hints if h)) or None,
    )
