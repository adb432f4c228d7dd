"""Re-export of `devhost.testing.azurite` for code written before the harness moved."""

from devhost.testing.azurite import ROOT, Azurite, free_port

__all__ = ["ROOT", "Azurite", "free_port"]
