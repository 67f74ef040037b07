"""Declarations of the core's models and the contrib models we use (filled in by the registry work)."""
