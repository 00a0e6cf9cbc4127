"""Inventories: YAML text -> a validated, frozen `Inventory` (the hosts, their roles, how to reach
them, the engine's options).

`models` is the schema (pydantic models, one per YAML section, all importable from it: the
`hosts:` section in `hosts`, the small sections in `sections`, `engine:` in `engine_options`,
the `-c` pool arithmetic in `pool`, the frozen base model in `base`), and
`Inventory.targets` / `Inventory.target_role(host)` the one way to read the target host(s)
(`hosts.target`, or `hosts.targets` with roles baseline|candidate|plain); `load` reads YAML
with line numbers (`load_inventory(path)`, `parse_inventory(text, source)`), so every
`InventoryError` names file:line and the field; `yamlsource` is that line-numbered YAML
reading, shared with the runbook loader (labctl.drill.runbook). The built-in lab's own
inventory is written by labctl.lab.inventory, not here.

May import: labctl.errors and labctl.model only (the bottom of the pipeline; everything else
may import it), and the engine's pure HTTP selection rules (`engine.http.select`), so that
`engine.select` is validated by the very parser tcpcopy uses.
"""
