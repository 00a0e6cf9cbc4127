"""The packet engine: tcpcopy and intercept, standard library only (Python >= 3.9)."""

__version__ = "0.1.0"
INTERNAL_VERSION = 6  # the C tools' channel version; we speak it byte for byte
