"""The intercept daemon: it captures the target's responses and routes them, as records, to the
tcpcopy that sent the requests.

Capture (AF_PACKET + kernel BPF built from ``-x``; worker j of ``--workers M`` narrowed to the
fake ports ``% M == j``) feeds ``router.Router``; the router's frames (through ``--netem-*``
when set) go to the tcpcopy connections, whose channel bytes feed ``protocol.ServerChannel``
(registrations become routes). A malformed frame or message is counted; the daemon never exits
for one.

The package: ``daemon`` (``InterceptDaemon``: set-up, the loop, capture, timers, stats),
``peers`` (the listening socket and one ``Peer`` per tcpcopy: accept, authenticate, read,
write, close), ``cli`` (``main``: flags, ``-d``, one daemon or ``--workers M``).
"""

from engine.intercept.cli import main
from engine.intercept.daemon import InterceptDaemon, SetupError
from engine.options.intercept import USAGE, InterceptOptions, UsageError, parse_args

__all__ = ["USAGE", "InterceptDaemon", "InterceptOptions", "SetupError", "UsageError", "main",
           "parse_args"]
