"""App packages: the format (a folder or zip of JSON definitions, templates
and data rows), validation, and install / upgrade / export / uninstall with
the tenant's customization layer. See docs/packages.md.

Modules: ``source`` (reading untrusted files), ``manifest`` (app.json),
``kinds`` (definition kind → folder → installer), ``loader`` (validation),
``layer`` (customizations and the three-way merge), ``install``, ``data``
(seed and demo rows), ``packaged_files`` (the files rows attach), ``export``,
``store`` (tables), ``cli`` and ``api``.
"""
