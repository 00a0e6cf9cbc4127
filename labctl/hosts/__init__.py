"""What labctl keeps on the hosts of a lab and about them: the per-host journal of an `up` (on the
host, with a local copy, and the local lab record) and the engine daemons (launch argv, start,
readiness waits, status, graceful stop, their stats files) and their supervision (`supervision`:
restarted when they exit, engine.supervise).

`up` writes both, `status`/`down` read and undo them, `verify` reads the daemons' counters and the
local state, the local lab writes its inventory into the local state directory.

May import: labctl.errors, labctl.model, labctl.transport. Never labctl.up, labctl.verify,
labctl.drill, labctl.lab, labctl.report or labctl.cli (they all build on this package).
"""
