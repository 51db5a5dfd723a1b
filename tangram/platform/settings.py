"""The platform reads the one settings registry that lives at the package root."""

from tangram.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
