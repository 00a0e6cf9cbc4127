"""labctl: copy live TCP traffic to a test server and orchestrate the copy lab."""

__version__ = "0.1.0"
