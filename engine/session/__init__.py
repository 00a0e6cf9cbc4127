"""The TCP session emulator: one copied connection towards the target (sans-I/O, pure).

A ``Session`` acts as the client side of TCP: captured client segments are its application
data (their sequence numbers are kept, study §3.1); the target's response headers (records from
intercept) teach it the target ISN, ACKs, window and when a response ended. It never touches a
socket or a clock: its table (``engine.session.table.Engine``, the ``Host``) passes ``now`` in,
turns the packets it emits into ``SendPacket`` actions and runs its timer.

The state lives in one slotted ``Session`` (``state``); the behaviour is composed from small
modules of functions over it, not inherited: ``output`` (packets), ``teardown`` (RST +
linger), ``pacing`` (when the next request may go), ``client`` (captured segments, the send
pump), ``target`` (responses, ACKs, retransmission, reconnects), ``timers`` (deadlines).
With a selection (``--allow-path`` & co.), ``selected`` (``ClientSelect``: the client stream
in order, framed, selected, mapped to the copied sequence space) and ``intake`` (its segments
to every replica) sit in front of ``client``.
Beside them: ``table`` (the session table ``Engine``: events in, typed actions out),
``admit`` (which client connections get copies, their replicas and fake tuples), ``config``
(knobs, counters, address mapping) and ``packets`` (hot-path packet building).
The events a table calls are re-exported here.
"""

from engine.session.client import on_data, on_syn
from engine.session.config import OOO_MAX, RST_WINDOW
from engine.session.output import send_ack
from engine.session.state import (
    CLOSED,
    ESTABLISHED,
    INF,
    M32,
    SYN_SENT,
    SYN_WAIT,
    Host,
    Segment,
    Session,
    after,
)
from engine.session.target import on_response
from engine.session.teardown import finish
from engine.session.timers import due, on_timer

__all__ = ["CLOSED", "ESTABLISHED", "INF", "M32", "OOO_MAX", "RST_WINDOW", "SYN_SENT",
           "SYN_WAIT", "Host", "Segment", "Session", "after", "due", "finish", "on_data",
           "on_response", "on_syn", "on_timer", "send_ack"]
