"""Rendering for the CLI (pure: no I/O): reports -> rich renderables for people, JSON for
pipelines. `findings` renders preflight findings grouped per check and subject; `ops` plans
and the `up`/`status`/`down`/`demo` reports; `verify` the loss ledger and the diagnosis (its
docstring documents the stable JSON documents).

May import: labctl.errors, labctl.model, the core packages whose reports it renders (labctl.up,
labctl.verify, labctl.drill, labctl.demo) and rich; from the engine its pure Prometheus text
format (`engine.metrics`, for `status --prometheus`). Never typer or labctl.cli's command
modules; nothing outside labctl.cli may import it.
"""
