"""Demo data generators, one module per app key; importing this package
registers them in ``install.DEMO_GENERATORS``."""

from tangram.platform.packages.demo import crm  # noqa: F401
