"""CLI commands: ops (placeholder, filled in by its issue)."""
