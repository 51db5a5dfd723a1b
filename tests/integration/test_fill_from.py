"""Fields filled from a linked record (``fill_from``), on both backends:
creates, link changes, sub-table rows, bulk writes, and only what the actor
may read."""

from __future__ import annotations

import uuid

import pytest

from tangram.engines.context import Actor
from tangram.engines.directory import users_table
from tangram.engines.forms import records
from tangram.engines.forms.publish import publish_form, save_form_draft
from tangram.engines.forms.registry import get_runtime
from tangram.errors import DefinitionInvalid, ValidationFailed
from tests.factories import World, field, form_body


@pytest.fixture
def world(engine):
    w = World(engine)
    w.publish(form_body("product", field("name"), field("price", "currency"),
                        field("secret", "currency")))
    w.publish(form_body("opportunity", field("name"), field("amount", "currency"),
                        field("stage")))
    w.publish(form_body(
        "contract", field("title"),
        field("opportunity", "relation", target="opportunity"),
        field("amount", "currency", required=True, read_only=True,
              fill_from="opportunity.amount"),
        field("stage_copy", "text", fill_from="opportunity.stage"),
        field("lines", "sub_table", fields=[
            field("product", "relation", target="product"),
            field("price", "currency", fill_from="product.price"),
            field("qty", "integer")])))
    return w


def create(world, form, actor=None, **values):
    return world.run(records.create_record, app="demo", form=form, data=values, actor=actor)


def test_a_create_takes_the_linked_value_unless_it_gives_one(world):
    opp = create(world, "opportunity", name="ERP", amount="120000.00", stage="proposal")
    made = create(world, "contract", title="HT", opportunity=opp["id"])
    assert made["amount"] == "120000.00" and made["stage_copy"] == "proposal"
    given = create(world, "contract", title="HT2", opportunity=opp["id"], stage_copy="mine")
    assert given["stage_copy"] == "mine"
    # amount is read-only: only the link may fill it, a client may not set it
    with pytest.raises(ValidationFailed) as info:
        create(world, "contract", title="HT3", opportunity=opp["id"], amount="1.00")
    assert ("amount", "read_only") in [(e.field, e.code) for e in info.value.errors]


def test_changing_the_link_refills_and_other_updates_leave_the_value(world):
    a = create(world, "opportunity", name="A", amount="100.00", stage="won")
    b = create(world, "opportunity", name="B", amount="250.50", stage="lost")
    made = create(world, "contract", title="HT", opportunity=a["id"])

    def update(rec, **changes):
        return world.run(records.update_record, app="demo", form="contract",
                         record_id=rec["id"], changes=changes, expected_version=rec["version"])

    made = update(made, title="renamed")
    assert made["amount"] == "100.00"
    made = update(made, opportunity=b["id"])
    assert (made["amount"], made["stage_copy"]) == ("250.50", "lost")
    made = update(made, opportunity=a["id"], stage_copy="kept")
    assert (made["amount"], made["stage_copy"]) == ("100.00", "kept")


def test_sub_table_rows_and_bulk_writes_fill_with_one_lookup_per_form(world, engine):
    p1 = create(world, "product", name="网关", price="99.90")
    p2 = create(world, "product", name="传感器", price="12.00")
    opp = create(world, "opportunity", name="X", amount="5.00")
    statements: list[str] = []

    import sqlalchemy as sa

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        made = world.run(records.bulk_create, app="demo", form="contract", rows=[
            {"title": f"T{i}", "opportunity": opp["id"],
             "lines": [{"product": p1["id"], "qty": 1}, {"product": p2["id"], "price": "1.00"}]}
            for i in range(20)])
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    with world.sessions() as session:
        tables = {get_runtime(session, "demo", f).table.name for f in ("product", "opportunity")}
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")
             and any(f'"{t}"' in s or f" {t}" in s for t in tables)
             and ("price" in s or "stage" in s)]
    assert len(reads) == 2  # one for the opportunities, one for the products
    rec = world.run(records.get_record, app="demo", form="contract", record_id=made[7]["id"])
    assert rec["amount"] == "5.00"
    assert [(line["price"], line["qty"]) for line in rec["lines"]] == [("99.90", 1),
                                                                      ("1.00", None)]


class _Scoped:
    """Opportunities of their owner only; products' 'secret' hidden."""

    def check_form_action(self, actor, app, form, action):
        return None

    def row_predicate(self, actor, app, form, table, action):
        return table.c.owner == actor.id if form == "opportunity" else None

    def check_row(self, actor, app, form, row, action):
        return None

    def field_access(self, actor, app, form):
        return {"secret": "hidden"} if form == "product" else {}


def test_only_what_the_actor_may_read_is_copied(world, engine):
    reps = [Actor(id=uuid.uuid4(), username=n) for n in ("a", "b")]
    with engine.begin() as conn:
        for rep in reps:
            conn.execute(users_table.insert().values(
                id=rep.id, username=rep.username, display_name=rep.username,
                created_at=world.clock.now(), updated_at=world.clock.now()))
    world.publish(form_body("quote", field("product", "relation", target="product"),
                            field("leak", "currency", fill_from="product.secret"),
                            field("opportunity", "relation", target="opportunity",
                                  link_outside_scope=True),
                            field("amount", "currency", fill_from="opportunity.amount")))
    theirs = create(world, "opportunity", actor=reps[1], name="B", amount="777.00")
    product = create(world, "product", name="P", price="1.00", secret="42.00")

    with world.sessions.begin() as s:
        ctx = world.ctx(s, reps[0])
        ctx.policy = _Scoped()
        made = records.create_record(ctx, app="demo", form="quote", data={
            "product": product["id"], "opportunity": theirs["id"]})
    # the link outside the rep's scope is allowed, its values are not copied
    assert made["amount"] is None and made["leak"] is None


def test_publish_refuses_a_fill_from_that_cannot_work(world):
    def publish(*fields):
        def go(ctx):
            save_form_draft(ctx, app="demo", key="bad", body=form_body("bad", *fields))
            return publish_form(ctx, app="demo", key="bad")
        return world.run(go)

    link = field("opportunity", "relation", target="opportunity")
    cases = [
        (field("x", "currency", fill_from="nope.amount"), "must be a relation field"),
        (field("x", "currency", fill_from="opportunity.nope"), "has no field 'nope'"),
        (field("x", "date", fill_from="opportunity.amount"), "cannot take 'amount'"),
    ]
    for f, message in cases:
        with pytest.raises(DefinitionInvalid) as info:
            publish(link, f)
        assert [(e.code, e.path) for e in info.value.errors] == [
            ("fill_from", "$.fields[1].fill_from")]
        assert message in info.value.errors[0].message
