"""Sub-table rows and the record they belong to (``parent``), on both backends:
a new row's default sees the parent's values of the same save, and row
formulas, sub-table rollups and record formulas are computed in dependency
order across the two levels (a row formula reading ``parent.total`` sees the
total of this save); a cycle across the levels is refused at publish."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tangram.engines.expressions import EvalContext
from tangram.engines.forms import records
from tangram.engines.forms.validation import compile_validator
from tangram.errors import DefinitionInvalid
from tangram.metamodel.forms import Form
from tests.factories import World, field, form_body

LINES = field("lines", "sub_table", fields=[
    field("item"),
    field("ship_by", "date", default_expr="parent.due_date"),
    field("region", default_expr="parent.region"),
    field("qty", "integer"),
    field("note", default_expr="row.item + '@' + parent.region"),
    field("amount", "formula", expression="row.qty * parent.rate", result_type="decimal",
          scale=2),
    # reads a record formula that is computed from a rollup of ``amount``
    field("share", "formula", expression="round(row.amount / parent.total, 4)",
          result_type="decimal", scale=4),
    # reads a record formula through a sub-table aggregate of its own rows
    field("of_lines", "formula", expression="round(row.amount / parent.lines_total, 2)",
          result_type="decimal", scale=2)])

ORDER = form_body(
    "order",
    # the sub-table comes first: row values must not depend on the field order
    LINES,
    field("due_date", "date"),
    field("region", default="east"),
    field("rate", "decimal", scale=2, default="1"),
    field("shipping", "decimal", scale=2),
    field("subtotal", "rollup", source={"sub_table": "lines"}, aggregate="sum",
          field="amount"),
    field("total", "formula", expression="record.subtotal + coalesce(record.shipping, 0)",
          result_type="decimal", scale=2),
    field("lines_total", "formula", expression='sum_of(record.lines, "amount")',
          result_type="decimal", scale=2))


@pytest.fixture
def world(engine):
    w = World(engine)
    w.publish(ORDER)
    return w


def create(world, **values):
    return world.run(records.create_record, app=world.app, form="order", data=values)


def update(world, rec, **values):
    return world.run(records.update_record, app=world.app, form="order", record_id=rec["id"],
                     changes=values, expected_version=rec["version"])


def column(rec, key):
    return [row[key] for row in rec["lines"]]


def test_a_new_rows_default_sees_the_parent_values_of_the_same_create(world):
    rec = create(world, lines=[{"item": "a", "qty": 1}, {"item": "b", "qty": 2,
                                                          "ship_by": "2026-04-01"}],
                 due_date="2026-05-01")
    # given in the request (after the sub-table), and filled by the record's default
    assert column(rec, "ship_by") == ["2026-05-01", "2026-04-01"]
    assert column(rec, "region") == ["east", "east"]
    assert column(rec, "note") == ["a@east", "b@east"]


def test_a_row_added_by_an_update_sees_the_parent_as_changed_in_that_update(world):
    rec = create(world, due_date="2026-05-01", region="north",
                 lines=[{"item": "a", "qty": 1}])
    rec = update(world, rec, lines=[*rec["lines"], {"item": "b", "qty": 1}],
                 due_date="2026-06-01")
    # the kept row keeps its stored value; the new one sees the changed due date
    # and the stored region
    assert column(rec, "ship_by") == ["2026-05-01", "2026-06-01"]
    assert column(rec, "region") == ["north", "north"]
    assert column(rec, "note") == ["a@north", "b@north"]


def test_a_row_formula_reads_the_record_formula_of_the_same_create(world):
    rec = create(world, rate="2", shipping="20",
                 lines=[{"item": "a", "qty": 10}, {"item": "b", "qty": 30}])
    assert column(rec, "amount") == ["20.00", "60.00"]
    assert (rec["subtotal"], rec["total"], rec["lines_total"]) == ("80.00", "100.00", "80.00")
    assert column(rec, "share") == ["0.2000", "0.6000"]
    assert column(rec, "of_lines") == ["0.25", "0.75"]


def test_a_row_formula_reads_the_record_formula_of_the_same_update(world):
    rec = create(world, rate="1", lines=[{"item": "a", "qty": 1}, {"item": "b", "qty": 3}])
    assert column(rec, "share") == ["0.2500", "0.7500"]
    rows = rec["lines"]
    rec = update(world, rec, lines=[rows[0], {**rows[1], "qty": 1}])
    assert rec["total"] == "2.00" and column(rec, "share") == ["0.5000", "0.5000"]
    # the rows are not sent: a change of the parent alone recomputes them
    rec = update(world, rec, shipping="2")
    assert rec["total"] == "4.00" and column(rec, "share") == ["0.2500", "0.2500"]
    rec = update(world, rec, rate="3")
    assert column(rec, "amount") == ["3.00", "3.00"] and rec["total"] == "8.00"
    assert column(rec, "share") == ["0.3750", "0.3750"]
    stored = world.run(records.get_record, app=world.app, form="order", record_id=rec["id"])
    assert column(stored, "share") == ["0.3750", "0.3750"]


def test_a_cycle_across_the_levels_is_refused_at_publish_naming_its_fields(world):
    body = form_body(
        "loop",
        field("lines", "sub_table", fields=[
            field("qty", "integer"),
            field("weight", "formula", expression="row.qty * parent.factor",
                  result_type="decimal")]),
        field("weights", "rollup", source={"sub_table": "lines"}, aggregate="sum",
              field="weight"),
        field("factor", "formula", expression="record.weights + 1", result_type="decimal"))
    with pytest.raises(DefinitionInvalid) as info:
        world.publish(body)
    cycles = [e for e in info.value.errors if e.code == "formula_cycle"]
    assert len(cycles) == 1
    assert all(name in cycles[0].message for name in ("lines.weight", "weights", "factor"))


def test_a_cycle_through_a_sub_table_aggregate_is_refused_at_publish(world):
    body = form_body(
        "loop2",
        field("lines", "sub_table", fields=[
            field("qty", "integer"),
            field("weight", "formula", expression="row.qty * parent.total",
                  result_type="decimal")]),
        field("total", "formula", expression='sum_of(record.lines, "weight")',
              result_type="decimal"))
    with pytest.raises(DefinitionInvalid) as info:
        world.publish(body)
    assert [e.code for e in info.value.errors] == ["formula_cycle"]
    assert "lines.weight" in info.value.errors[0].message
    assert "total" in info.value.errors[0].message


def test_a_row_default_may_not_read_a_computed_parent_field(world):
    body = form_body(
        "early",
        field("lines", "sub_table", fields=[
            field("qty", "integer"),
            field("budget", "decimal", default_expr="parent.total")]),
        field("total", "formula", expression="record.base * 2", result_type="decimal"),
        field("base", "decimal"))
    with pytest.raises(DefinitionInvalid) as info:
        world.publish(body)
    assert [(e.code, e.path) for e in info.value.errors] == [
        ("default_reads_computed", "$.fields[0].fields[1].default_expr")]
    assert "parent.total" in info.value.errors[0].message


def test_http_create_and_update_give_rows_the_parents_values(admin_client):
    r = admin_client.post("/api/apps", json={"key": "shop", "name": {"zh": "商店"}})
    assert r.status_code == 201, r.text
    r = admin_client.put("/api/apps/shop/forms/order/draft", json={"definition": ORDER})
    assert r.status_code == 200, r.text
    r = admin_client.post("/api/apps/shop/forms/order/publish", json={})
    assert r.status_code == 200, r.text
    url = "/api/apps/shop/forms/order/records"
    r = admin_client.post(url, json={"values": {
        "lines": [{"item": "a", "qty": 1}, {"item": "b", "qty": 3}],
        "due_date": "2026-05-01", "shipping": "4"}})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert column(rec, "ship_by") == ["2026-05-01", "2026-05-01"]
    assert column(rec, "share") == ["0.1250", "0.3750"] and rec["total"] == "8.00"
    r = admin_client.patch(f"{url}/{rec['id']}", json={"values": {"shipping": "0"},
                                                       "version": rec["version"]})
    assert r.status_code == 200, r.text
    assert column(r.json(), "share") == ["0.2500", "0.7500"]



def test_row_formulas_reading_their_rows_as_a_whole_are_ordered_not_a_cycle():
    # Validator only (no database): both formulas read ``parent.lines``; each
    # depends on the columns it names, so neither waits for the other.
    form = Form.model_validate(form_body(
        "split",
        field("lines", "sub_table", fields=[
            field("qty", "integer"),
            field("pct", "formula", result_type="decimal", scale=2,
                  expression='round(row.amount / sum_of(parent.lines, "amount"), 2)'),
            field("n", "formula", expression="count_of(parent.lines)", result_type="integer"),
            field("amount", "formula", expression="row.qty * 2", result_type="integer")])))
    outcome = compile_validator(form).validate(
        {"lines": [{"qty": 1}, {"qty": 3}]}, old=None, user={}, eval_context=EvalContext())
    assert outcome.errors == []
    rows = outcome.sub_rows["lines"]
    assert [(r["amount"], r["pct"], r["n"]) for r in rows] == [
        (2, Decimal("0.25"), 2), (6, Decimal("0.75"), 2)]
