"""Command-line flags of the daemons: pure parsing and validation (no I/O).

``engine.options.tcpcopy`` (re-exported here: ``engine.options.parse_tcpcopy_args`` …), its
address values in ``engine.options.addresses`` (``-x``, ``-c``, ``-s``), and
``engine.options.intercept``."""

from engine.options.tcpcopy import (
    OptionsError,
    TcpcopyOptions,
    Transfer,
    parse_tcpcopy_args,
    parse_transfer,
    selection,
    usage,
)

__all__ = ["OptionsError", "TcpcopyOptions", "Transfer", "parse_tcpcopy_args", "parse_transfer",
           "selection", "usage"]
