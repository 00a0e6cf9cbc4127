"""Process-wide CLI switches (set once by the root callback)."""

DEBUG = False
