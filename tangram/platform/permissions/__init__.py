"""Organization and permissions: roles as data, row scopes, field rules,
sharing, ownership transfer, API tokens, login lockout and the security audit
log. ``RolePolicy`` is the AccessPolicy the platform gives engines."""

import tangram.metamodel.roles  # noqa: F401  (registers the "role" definition kind)
