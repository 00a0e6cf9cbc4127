"""CLI commands: lab (placeholder, filled in by its issue)."""
