"""Publishing a form recomputes the stored records' computed values, sub-table
rows included, on both backends: a row formula column added or changed at
publish gets its value in every stored row, and the rollups and record
formulas over it follow (in the validator's dependency order). Like the
record formulas' backfill it is a recomputation, not an edit: only rows and
records whose values change are written, with no history entry, event or new
record version; the form's data version moves so cached reports refresh."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tangram.engines.forms import records
from tangram.engines.forms.registry import get_runtime
from tangram.engines.forms.systables import form_tables_table
from tests.factories import World, field, form_body

QTY = field("qty", "integer")
PRICE = field("price", "decimal", scale=2)


def order(*line_fields: dict[str, Any], extra: tuple[dict[str, Any], ...] = ()
          ) -> dict[str, Any]:
    return form_body("order", field("name"), field("lines", "sub_table", fields=[
        field("item"), QTY, PRICE, *line_fields]), *extra)


AMOUNT = field("amount", "formula", expression="row.qty * row.price", result_type="decimal",
               scale=2)
TOTALS = (field("subtotal", "rollup", source={"sub_table": "lines"}, aggregate="sum",
                field="amount"),
          field("total", "formula", expression="record.subtotal + 1", result_type="decimal",
                scale=2))


@pytest.fixture
def world(engine):
    return World(engine)


def create(world: World, **values: Any) -> dict[str, Any]:
    return world.run(records.create_record, app=world.app, form="order", data=values)


def get(world: World, rec: dict[str, Any]) -> dict[str, Any]:
    return world.run(records.get_record, app=world.app, form="order", record_id=rec["id"])


def history(world: World, rec: dict[str, Any]) -> list[dict[str, Any]]:
    return world.run(records.record_history, app=world.app, form="order", record_id=rec["id"])


def column(rec: dict[str, Any], key: str) -> list[Any]:
    return [row[key] for row in rec["lines"]]


def data_version(world: World, form: str = "order") -> int:
    ft = form_tables_table
    return world.run(lambda ctx: ctx.session.execute(
        sa.select(ft.c.data_version).where(ft.c.app == world.app, ft.c.form == form))
        .scalar_one())


class Writes:
    """Rows written by UPDATE statements, per table (an executemany counts
    each parameter set)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.rows: dict[str, int] = {}
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        text = statement.lstrip()
        if not text.upper().startswith("UPDATE"):
            return
        table = text.split()[1].strip('"')
        self.rows[table] = self.rows.get(table, 0) + (len(parameters) if executemany else 1)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


def table_names(world: World) -> tuple[str, str]:
    def names(ctx: Any) -> tuple[str, str]:
        tables = get_runtime(ctx.session, world.app, "order").tables
        return tables.table.name, tables.children["lines"].name
    return world.run(names)


def test_a_row_formula_column_added_at_publish_is_filled_in_stored_rows(world):
    world.publish(order())
    rec = create(world, name="a", lines=[{"item": "x", "qty": 2, "price": "1.50"},
                                         {"item": "y", "qty": 3}])
    empty = create(world, name="b")
    before = data_version(world)

    world.publish(order(AMOUNT))

    stored = get(world, rec)
    assert column(stored, "amount") == ["3.00", None]  # 3 × nothing is nothing
    assert column(stored, "item") == ["x", "y"]  # the given values stay as they were
    assert [r["id"] for r in stored["lines"]] == [r["id"] for r in rec["lines"]]
    # a recomputation, not an edit: same version, no history entry
    assert stored["version"] == rec["version"]
    assert [h["action"] for h in history(world, rec)] == ["create"]
    assert get(world, empty)["lines"] == []
    assert data_version(world) > before  # cached reports over the form refresh


def test_a_changed_row_formula_updates_rows_the_rollup_and_the_record_formula(world):
    world.publish(order(AMOUNT, extra=TOTALS))
    rec = create(world, name="a", lines=[{"item": "x", "qty": 2, "price": "1.50"},
                                         {"item": "y", "qty": 4, "price": "2.00"}])
    assert (column(rec, "amount"), rec["subtotal"], rec["total"]) == (
        ["3.00", "8.00"], "11.00", "12.00")

    doubled = field("amount", "formula", expression="row.qty * row.price * 2",
                    result_type="decimal", scale=2)
    world.publish(order(doubled, extra=TOTALS))

    stored = get(world, rec)
    assert column(stored, "amount") == ["6.00", "16.00"]
    assert (stored["subtotal"], stored["total"]) == ("22.00", "23.00")
    assert stored["version"] == rec["version"]
    assert [h["action"] for h in history(world, rec)] == ["create"]


def test_a_row_formula_reading_a_changed_record_formula_is_recomputed(world):
    share = field("share", "formula", expression="round(row.amount / parent.total, 4)",
                  result_type="decimal", scale=4)
    world.publish(order(AMOUNT, share, extra=TOTALS))
    rec = create(world, name="a", lines=[{"qty": 1, "price": "1.00"},
                                         {"qty": 2, "price": "1.00"}])
    assert column(rec, "share") == ["0.2500", "0.5000"]  # total = 3 + 1

    plus_seven = field("total", "formula", expression="record.subtotal + 7",
                       result_type="decimal", scale=2)
    world.publish(order(AMOUNT, share, extra=(TOTALS[0], plus_seven)))

    stored = get(world, rec)
    assert stored["total"] == "10.00"
    assert column(stored, "share") == ["0.1000", "0.2000"]


def test_rows_and_records_whose_values_do_not_change_are_not_rewritten(world, engine):
    at_least_5 = field("amount", "formula", expression="row.qty if row.qty >= 5 else 5",
                       result_type="decimal", scale=2)
    plain = field("amount", "formula", expression="row.qty", result_type="decimal", scale=2)
    world.publish(order(plain, extra=TOTALS))
    same = create(world, name="same", lines=[{"qty": 10}, {"qty": 20}])
    moved = create(world, name="moved", lines=[{"qty": 1}, {"qty": 10}, {"qty": 30}])
    main, child = table_names(world)

    writes = Writes(engine)
    try:
        world.publish(order(at_least_5, extra=TOTALS))
    finally:
        writes.close()

    assert column(get(world, moved), "amount") == ["5.00", "10.00", "30.00"]
    assert get(world, moved)["total"] == "46.00"
    # one row of one record changed: one row and one record written, nothing else
    assert writes.rows.get(child) == 1
    assert writes.rows.get(main) == 1
    kept = get(world, same)
    assert (kept["version"], kept["updated_at"]) == (same["version"], same["updated_at"])
    assert column(kept, "amount") == ["10.00", "20.00"]


def test_a_few_hundred_records_are_backfilled_in_bounded_batches(world, monkeypatch):
    world.publish(order())
    count = 300
    rows = [{"name": f"r{i}", "lines": [{"qty": i, "price": "1.00"}, {"qty": 1, "price": "2.00"}]}
            for i in range(count)]
    ids = [r["id"] for r in world.run(records.bulk_create, app=world.app, form="order",
                                      rows=rows)]
    deleted = create(world, name="gone", lines=[{"qty": 1, "price": "1.00"}])
    world.run(records.delete_record, app=world.app, form="order", record_id=deleted["id"])

    loaded: list[int] = []
    real = records._load_children

    def spy(ctx: Any, rt: Any, ids: list[Any], keys: Any = None) -> Any:
        loaded.append(len(ids))
        return real(ctx, rt, ids, keys)

    monkeypatch.setattr(records, "_load_children", spy)
    monkeypatch.setattr(records, "BACKFILL_BATCH", 64)
    world.publish(order(AMOUNT, extra=TOTALS))
    monkeypatch.undo()

    # every live record, at most one batch at a time in memory
    assert sum(loaded) == count and max(loaded) == 64
    for i in (0, 1, 63, 64, 65, 199, count - 1):
        rec = get(world, {"id": ids[i]})
        assert column(rec, "amount") == [f"{i}.00", "2.00"]
        assert (rec["subtotal"], rec["total"]) == (f"{i + 2}.00", f"{i + 3}.00")


def test_formulas_and_rows_over_a_changed_rollup_of_another_form_follow_it(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("deal", field("account", "relation", target="account"),
                            field("amount", "decimal", scale=2), field("won", "boolean")))

    def account(rollup_filter: dict[str, Any] | None) -> dict[str, Any]:
        return form_body(
            "account", field("name"),
            field("lines", "sub_table", fields=[
                field("weight", "decimal", scale=2),
                field("target", "formula", expression="row.weight * parent.booked",
                      result_type="decimal", scale=2)]),
            field("booked", "rollup", source={"form": "deal", "via": "account"},
                  aggregate="sum", field="amount",
                  **({"filter": rollup_filter} if rollup_filter else {})),
            field("goal", "formula", expression="record.booked * 2", result_type="decimal",
                  scale=2))

    world.publish(account(None))
    acc = world.run(records.create_record, app=world.app, form="account",
                    data={"name": "A", "lines": [{"weight": "0.5"}]})
    for amount, won in (("10", True), ("30", False)):
        world.run(records.create_record, app=world.app, form="deal",
                  data={"account": acc["id"], "amount": amount, "won": won})
    acc = world.run(records.get_record, app=world.app, form="account", record_id=acc["id"])
    assert (acc["booked"], acc["goal"], column(acc, "target")) == ("40.00", "80.00", ["20.00"])

    world.publish(account({"field": "won", "op": "eq", "value": True}))  # only won deals count now

    stored = world.run(records.get_record, app=world.app, form="account", record_id=acc["id"])
    assert stored["booked"] == "10.00"
    assert (stored["goal"], column(stored, "target")) == ("20.00", ["5.00"])
    assert stored["version"] == acc["version"]


def test_a_changed_rollup_of_another_form_alone_refreshes_cached_reports(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("deal", field("account", "relation", target="account"),
                            field("amount", "decimal", scale=2)))
    world.publish(form_body("account", field("name"), field(
        "booked", "rollup", source={"form": "deal", "via": "account"}, aggregate="sum",
        field="amount")))
    acc = world.run(records.create_record, app=world.app, form="account", data={"name": "A"})
    for amount in ("10", "30"):
        world.run(records.create_record, app=world.app, form="deal",
                  data={"account": acc["id"], "amount": amount})
    before = data_version(world, "account")

    world.publish(form_body("account", field("name"), field(
        "booked", "rollup", source={"form": "deal", "via": "account"}, aggregate="max",
        field="amount")))

    stored = world.run(records.get_record, app=world.app, form="account", record_id=acc["id"])
    assert stored["booked"] == "30.00"
    assert data_version(world, "account") > before
