"""CLI commands: verify (placeholder, filled in by its issue)."""
