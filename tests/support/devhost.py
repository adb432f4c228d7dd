"""Re-export of `devhost.testing.harness` for code written before the harness moved."""

from devhost.testing.harness import DevHost, unique_hub

__all__ = ["DevHost", "unique_hub"]
