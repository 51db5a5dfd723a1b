"""Publishing refuses expressions that read what does not exist — on the
record and on the user (nothing but the documented user attributes is ever
readable, let alone a password hash) — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tangram.errors import DefinitionInvalid
from tests.factories import World, field, form_body


@pytest.mark.parametrize("attr", ["nonexistent_attr", "password_hash"])
def test_an_unknown_user_attribute_is_refused_at_publish(engine, attr):
    world = World(engine)
    body = form_body("t", field("v", default_expr=f"user.{attr}"))
    with pytest.raises(DefinitionInvalid) as info:
        world.publish(body)
    [error] = info.value.errors
    assert error.code == "unknown_field" and error.path == "$.fields[0].default_expr"
    assert f"user.{attr}" in error.message and "department" in error.message


def test_documented_user_attributes_publish(engine):
    world = World(engine)
    world.publish(form_body("t", field("v", default_expr="concat(user.name, user.department)")))
