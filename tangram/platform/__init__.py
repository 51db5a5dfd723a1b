"""The platform: HTTP API, authentication, permissions, packages, CLI. Importing
it installs what the engines need from it (``tangram.platform.hooks``)."""

from tangram.platform import hooks as _hooks  # noqa: F401
