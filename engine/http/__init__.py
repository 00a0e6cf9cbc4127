"""Per-request HTTP/1.x selection inside a copied TCP stream (issue 9), sans-I/O.

Not wired into tcpcopy yet: issue 9 continues (flags, the session emulator's sequence shift,
stats). Standard library only, Python 3.9, like the rest of ``engine``.
"""
