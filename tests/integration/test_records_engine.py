"""The records service on SQLite and PostgreSQL: writes, locking, soft delete,
audit, relations' on-delete rules, autonumbers, rollups, events."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from tangram.engines.forms import events, records
from tangram.engines.forms.query import ListQuery
from tangram.errors import Conflict, NotFound, ValidationFailed
from tests.factories import World, field, form_body


@pytest.fixture
def world(engine):
    return World(engine)


def create(world, form, **values):
    return world.run(records.create_record, app=world.app, form=form, data=values)


def update(world, form, rec, **values):
    return world.run(records.update_record, app=world.app, form=form, record_id=rec["id"],
                     changes=values, expected_version=rec["version"])


def get(world, form, rec, **kw):
    return world.run(records.get_record, app=world.app, form=form, record_id=rec["id"], **kw)


def test_create_read_update_with_audit_history(world):
    world.publish(form_body("lead", field("name", required=True), field("phone", "phone",
                                                                       unique=True),
                            field("score", "integer")))
    rec = create(world, "lead", name="张三", phone="13812345678", score=3)
    assert rec["version"] == 1 and rec["name"] == "张三"
    world.clock.advance(minutes=5)
    rec2 = update(world, "lead", rec, score=4, name="张三")
    assert rec2["version"] == 2 and rec2["score"] == 4
    assert get(world, "lead", rec)["score"] == 4
    history = world.run(records.record_history, app="demo", form="lead", record_id=rec["id"])
    assert [h["action"] for h in history] == ["update", "create"]
    assert history[0]["changes"] == {"score": {"old": 3, "new": 4}}  # name unchanged: not listed
    assert history[1]["changes"] == {}  # a create's values are the record itself


def test_all_errors_at_once_and_nothing_written(world):
    world.publish(form_body("lead", field("name", required=True),
                            field("phone", "phone", unique=True), field("n", "integer", max=5)))
    create(world, "lead", name="a", phone="13812345678")
    with pytest.raises(ValidationFailed) as info:
        create(world, "lead", phone="13812345678", n=9)
    # every problem at once, the taken phone number too
    assert sorted((e.field, e.code) for e in info.value.errors) == [
        ("n", "max"), ("name", "required"), ("phone", "unique")]
    with pytest.raises(ValidationFailed) as info:
        create(world, "lead", name="b", phone="13812345678")
    assert [(e.field, e.code) for e in info.value.errors] == [("phone", "unique")]
    page = world.run(records.list_records, app="demo", form="lead",
                     query=ListQuery(include_total=True))
    assert page["total"] == 1


def test_optimistic_lock_conflict_changes_nothing(world):
    world.publish(form_body("doc", field("title")))
    rec = create(world, "doc", title="v1")
    update(world, "doc", rec, title="v2")
    with pytest.raises(Conflict):
        update(world, "doc", rec, title="stale")  # rec still has version 1
    assert get(world, "doc", rec)["title"] == "v2"


def test_soft_delete_recycle_bin_and_restore(world):
    world.publish(form_body("doc", field("code", unique=True)))
    rec = create(world, "doc", code="A")
    world.run(records.delete_record, app="demo", form="doc", record_id=rec["id"])
    with pytest.raises(NotFound):
        get(world, "doc", rec)
    assert get(world, "doc", rec, deleted=True)["deleted_at"]
    binned = world.run(records.list_records, app="demo", form="doc",
                       query=ListQuery(deleted=True))
    assert [r["id"] for r in binned["items"]] == [rec["id"]]
    # the deleted record does not block its unique value …
    other = create(world, "doc", code="A")
    # … so restoring it now conflicts, clearly
    with pytest.raises(Conflict):
        world.run(records.restore_record, app="demo", form="doc", record_id=rec["id"])
    world.run(records.delete_record, app="demo", form="doc", record_id=other["id"])
    restored = world.run(records.restore_record, app="demo", form="doc", record_id=rec["id"])
    assert restored["code"] == "A" and "deleted_at" not in restored
    actions = [h["action"] for h in world.run(records.record_history, app="demo", form="doc",
                                              record_id=rec["id"])]
    assert actions == ["restore", "delete", "create"]


@pytest.mark.parametrize("rule", ["restrict", "set_null", "cascade"])
def test_relation_on_delete_rules(world, rule):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("contact", field("name"),
                            field("account", "relation", target="account", on_delete=rule)))
    acc = create(world, "account", name="ACME")
    con = create(world, "contact", name="Li", account=acc["id"])
    assert con["_display"]["account"] == "ACME"
    if rule == "restrict":
        with pytest.raises(Conflict) as info:
            world.run(records.delete_record, app="demo", form="account", record_id=acc["id"])
        assert info.value.details["count"] == 1
        assert get(world, "account", acc)["name"] == "ACME"
        return
    world.run(records.delete_record, app="demo", form="account", record_id=acc["id"])
    if rule == "set_null":
        assert get(world, "contact", con)["account"] is None
    else:
        with pytest.raises(NotFound):
            get(world, "contact", con)
        assert get(world, "contact", con, deleted=True)["account"] == acc["id"]


def test_relation_target_must_exist_and_be_live(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("contact", field("account", "relation", target="account")))
    acc = create(world, "account", name="x")
    world.run(records.delete_record, app="demo", form="account", record_id=acc["id"])
    with pytest.raises(ValidationFailed) as info:
        create(world, "contact", account=acc["id"])
    assert [(e.field, e.code) for e in info.value.errors] == [("account", "relation_missing")]


def test_autonumber_yearly_sequence(world):
    world.publish(form_body("contract", field("no", "autonumber", pattern="HT-{YYYY}-{seq:4}"),
                            field("title")))
    nums = [create(world, "contract", title=str(i))["no"] for i in range(3)]
    assert nums == ["HT-2026-0001", "HT-2026-0002", "HT-2026-0003"]
    with pytest.raises(ValidationFailed):
        world.run(records.create_record, app="demo", form="contract", data={"bogus": 1})
    assert create(world, "contract", title="x")["no"] == "HT-2026-0004"  # no gap after failure
    world.clock.advance(days=365)
    assert create(world, "contract", title="y")["no"] == "HT-2027-0001"


def test_autonumber_concurrent_inserts_unique_and_gapless(world):
    world.publish(form_body("ticket", field("no", "autonumber", pattern="T{seq:5}")))
    results: list[str] = []
    errors: list[Exception] = []

    def worker():
        try:
            for _ in range(10):
                results.append(create(world, "ticket")["no"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [f"T{i:05d}" for i in range(1, 41)]


def test_sub_table_rows_and_rollups_kept_current(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body(
        "quote", field("account", "relation", target="account"),
        field("lines", "sub_table", fields=[field("qty", "integer"), field("price", "decimal"),
                                            field("sub", "formula", result_type="decimal",
                                                  expression="row.qty * row.price")]),
        field("total", "rollup", source={"sub_table": "lines"}, aggregate="sum", field="sub")))
    world.publish(form_body(
        "account", field("name"),
        field("quoted", "rollup", source={"form": "quote", "via": "account"}, aggregate="sum",
              field="total"),
        field("quotes", "rollup", source={"form": "quote", "via": "account"})))
    acc = create(world, "account", name="A")
    q1 = create(world, "quote", account=acc["id"], lines=[{"qty": 2, "price": "10"},
                                                          {"qty": 1, "price": "5.5"}])
    assert q1["total"] == "25.50"
    assert [line["sub"] for line in q1["lines"]] == ["20.00", "5.50"]
    q2 = create(world, "quote", account=acc["id"], lines=[{"qty": 1, "price": "100"}])
    assert get(world, "account", acc)["quoted"] == "125.50"
    assert get(world, "account", acc)["quotes"] == 2
    q1 = update(world, "quote", q1, lines=[{"id": q1["lines"][0]["id"], "qty": 3,
                                            "price": "10"}])
    assert q1["total"] == "30.00" and len(q1["lines"]) == 1
    assert get(world, "account", acc)["quoted"] == "130.00"
    world.run(records.delete_record, app="demo", form="quote", record_id=q2["id"])
    assert get(world, "account", acc)["quoted"] == "30.00"
    acc2 = create(world, "account", name="B")
    update(world, "quote", q1, account=acc2["id"])  # moving a child updates both parents
    assert get(world, "account", acc)["quoted"] == "0.00"
    assert get(world, "account", acc2)["quoted"] == "30.00"
    history = world.run(records.record_history, app="demo", form="account", record_id=acc["id"])
    assert history[0]["source"] == "rollup"


def test_rollup_with_filter(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("contract", field("account", "relation", target="account"),
                            field("amount", "currency"),
                            field("status", "select", options=[
                                {"value": "draft", "label": {"en": "Draft"}},
                                {"value": "signed", "label": {"en": "Signed"}}])))
    world.publish(form_body("account", field("name"), field(
        "signed_total", "rollup", source={"form": "contract", "via": "account"},
        aggregate="sum", field="amount",
        filter={"field": "status", "op": "eq", "value": "signed"})))
    acc = create(world, "account", name="A")
    c = create(world, "contract", account=acc["id"], amount="600000", status="draft")
    assert get(world, "account", acc)["signed_total"] == "0.00"
    update(world, "contract", c, status="signed")
    assert get(world, "account", acc)["signed_total"] == "600000.00"


SIGNED = [{"value": "draft", "label": {"en": "Draft"}},
          {"value": "signed", "label": {"en": "Signed"}}]


def test_min_and_max_of_dates_are_dates_kept_current_and_filtered_as_dates(world):
    from tangram.engines.reports.service import run_definition
    from tangram.metamodel.reports import Report

    world.publish(form_body("account", field("name")))
    world.publish(form_body("contract", field("account", "relation", target="account"),
                            field("status", "select", options=SIGNED),
                            field("sign_date", "date"), field("sent_at", "datetime")))
    world.publish(form_body(
        "account", field("name"),
        field("last_signed", "rollup", source={"form": "contract", "via": "account"},
              aggregate="max", field="sign_date", result_type="date",
              filter={"field": "status", "op": "eq", "value": "signed"}),
        field("first_sent", "rollup", source={"form": "contract", "via": "account"},
              aggregate="min", field="sent_at", result_type="datetime")))
    a, b = create(world, "account", name="A"), create(world, "account", name="B")
    assert (a["last_signed"], a["first_sent"]) == (None, None)  # nothing to aggregate yet
    create(world, "contract", account=a["id"], status="signed", sign_date="2025-11-20",
           sent_at="2025-11-18T02:00:00Z")
    late = create(world, "contract", account=a["id"], status="draft", sign_date="2026-01-03",
                  sent_at="2025-11-17T20:30:00+08:00")
    create(world, "contract", account=b["id"], status="signed", sign_date="2025-06-30")
    got = get(world, "account", a)
    # Dates as the source fields render them: a day, an instant in UTC — not numbers.
    assert (got["last_signed"], got["first_sent"]) == ("2025-11-20", "2025-11-17T12:30:00Z")
    update(world, "contract", late, status="signed")
    assert get(world, "account", a)["last_signed"] == "2026-01-03"
    world.run(records.delete_record, app="demo", form="contract", record_id=late["id"])
    assert get(world, "account", a)["last_signed"] == "2025-11-20"

    def names(flt):
        page = world.run(records.list_records, app="demo", form="account",
                         query=ListQuery(filter=flt, sort=["last_signed"]))
        return [r["name"] for r in page["items"]]

    assert names({"field": "last_signed", "op": "lt", "value": "2025-07-01"}) == ["B"]
    assert names({"field": "last_signed", "op": "date_range",
                  "value": {"last_n_days": 60}}) == ["A"]  # today is 2026-01-05
    assert names({"field": "first_sent", "op": "is_empty", "value": True}) == ["B"]

    # Reports read them as dates: a month bucket and days_between() in a calculated field.
    report = Report.model_validate({
        "key": "r", "label": {"en": "R"}, "form": "account",
        "dimensions": [{"type": "date", "key": "month", "field": "last_signed",
                        "bucket": "month"}],
        "measures": [{"agg": "count", "key": "n"},
                     {"agg": "max", "key": "days", "expression":
                      "days_between(record.last_signed, today())"}]})
    result = world.run(lambda ctx: run_definition(ctx, app="demo", report=report, version=1,
                                                  use_cache=False)[0])
    rows = {str(r["month"]): (r["n"], r["days"]) for r in result.frame.to_dict("records")}
    assert rows == {"2025-06-01": (1, 189), "2025-11-01": (1, 46)}


def test_a_date_rollup_over_sub_table_rows_and_one_published_over_existing_records(world):
    world.publish(form_body(
        "plan", field("name"), field("steps", "sub_table", fields=[field("due", "date")]),
        field("last_due", "rollup", source={"sub_table": "steps"}, aggregate="max",
              field="due", result_type="date")))
    rec = create(world, "plan", name="p", steps=[{"due": "2026-03-01"}, {"due": "2026-02-01"},
                                                  {}])
    assert rec["last_due"] == "2026-03-01"
    assert update(world, "plan", rec, steps=[])["last_due"] is None

    world.publish(form_body("account", field("name")))
    world.publish(form_body("contract", field("account", "relation", target="account"),
                            field("sign_date", "date")))
    acc = create(world, "account", name="A")
    create(world, "contract", account=acc["id"], sign_date="2025-12-01")
    create(world, "contract", account=acc["id"], sign_date="2025-10-01")
    world.publish(form_body(
        "account", field("name"),
        field("first_signed", "rollup", source={"form": "contract", "via": "account"},
              aggregate="min", field="sign_date", result_type="date")))
    assert get(world, "account", acc)["first_signed"] == "2025-10-01"


@pytest.mark.parametrize("rollup,where,message", [
    ({"aggregate": "sum", "field": "sign_date"}, "aggregate",
     "rollup sum cannot add up 'sign_date', a date field; min and max work on dates"),
    ({"aggregate": "avg", "field": "sent_at"}, "aggregate",
     "rollup avg cannot add up 'sent_at', a datetime field"),
    ({"aggregate": "max", "field": "sign_date"}, "result_type",
     "rollup max of 'sign_date' (a date field) gives a date: set \"result_type\": \"date\""),
    ({"aggregate": "min", "field": "sent_at", "result_type": "date"}, "result_type",
     "gives a datetime"),
    ({"aggregate": "max", "field": "amount", "result_type": "date"}, "result_type",
     "rollup max of 'amount' (a number) gives a number, not a date"),
    ({"aggregate": "max", "field": "title"}, "field",
     "needs a numeric field (or, for min and max, a date or date-time field); 'title' is text"),
])
def test_rollups_of_dates_are_refused_where_they_make_no_sense(world, rollup, where, message):
    from tangram.errors import DefinitionInvalid

    world.publish(form_body("account", field("name")))
    world.publish(form_body("contract", field("account", "relation", target="account"),
                            field("title"), field("amount", "currency"),
                            field("sign_date", "date"), field("sent_at", "datetime")))
    with pytest.raises(DefinitionInvalid) as info:
        world.publish(form_body("account", field("name"), field(
            "r", "rollup", source={"form": "contract", "via": "account"}, **rollup)))
    [error] = info.value.errors
    assert error.path == f"$.fields[1].{where}" and message in error.message, error


def test_a_date_result_needs_min_or_max():
    from tangram.metamodel.fields import RollupField

    with pytest.raises(ValueError, match="result_type 'date' needs aggregate min or max"):
        RollupField.model_validate({"key": "r", "type": "rollup", "label": {"en": "r"},
                                    "source": {"sub_table": "lines"}, "aggregate": "sum",
                                    "field": "due", "result_type": "date"})


def test_events_emitted_in_the_transaction(world):
    world.publish(form_body("lead", field("name"), field("status")))
    seen: list[tuple[str, tuple[str, ...]]] = []

    def listener(ctx, evt):
        seen.append((evt.event, evt.changed_fields))
        if evt.record.get("name") == "boom":
            raise RuntimeError("subscriber failed")

    events.subscribe(listener)
    try:
        rec = create(world, "lead", name="a")
        update(world, "lead", rec, status="x")
        with pytest.raises(RuntimeError):
            create(world, "lead", name="boom")
    finally:
        events.unsubscribe(listener)
    assert seen[:2] == [("created", ("name",)), ("updated", ("status",))]
    # the failing subscriber rolled back the record it was told about
    page = world.run(records.list_records, app="demo", form="lead",
                     query=ListQuery(include_total=True))
    assert page["total"] == 1


def test_bulk_create_all_or_nothing_with_row_errors(world):
    world.publish(form_body("lead", field("name", required=True),
                            field("phone", "phone", unique=True)))
    with pytest.raises(ValidationFailed) as info:
        world.run(records.bulk_create, app="demo", form="lead", rows=[
            {"name": "a", "phone": "13800000001"}, {"phone": "x"},
            {"name": "c", "phone": "13800000001"}])
    assert sorted((e.field, e.code) for e in info.value.errors) == [
        ("rows[1].name", "required"), ("rows[1].phone", "phone"), ("rows[2].phone", "unique")]
    assert world.run(records.list_records, app="demo", form="lead",
                     query=ListQuery(include_total=True))["total"] == 0
    made = world.run(records.bulk_create, app="demo", form="lead",
                     rows=[{"name": f"n{i}", "phone": f"1380000000{i}"} for i in range(5)])
    assert len(made) == 5


def test_decimal_values_exact(world):
    world.publish(form_body("pay", field("amount", "currency")))
    for v in ("0.10", "0.20", "123456789012.34"):
        create(world, "pay", amount=v)
    page = world.run(records.list_records, app="demo", form="pay",
                     query=ListQuery(sort=["amount"]))
    assert [r["amount"] for r in page["items"]] == ["0.10", "0.20", "123456789012.34"]
    assert sum(Decimal(r["amount"]) for r in page["items"]) == Decimal("123456789012.64")


def test_list_uses_the_forms_default_sort(world):
    world.publish(form_body("task", field("title"), field("due", "date"),
                            default_sort=["due"]))
    for day in ("2026-03-05", "2026-03-01", "2026-03-09"):
        create(world, "task", title=day, due=day)
    page = world.run(records.list_records, app="demo", form="task", query=ListQuery())
    assert [r["title"] for r in page["items"]] == ["2026-03-01", "2026-03-05", "2026-03-09"]
    newest = world.run(records.list_records, app="demo", form="task",
                       query=ListQuery(sort=["-created_at"]))
    assert [r["title"] for r in newest["items"]][0] == "2026-03-09"


def test_formula_reads_the_fresh_sub_table_rollup_and_decimals_take_their_scale(world):
    world.publish(form_body(
        "order", field("lines", "sub_table", fields=[field("price", "decimal", scale=2)]),
        field("total", "rollup", source={"sub_table": "lines"}, aggregate="sum", field="price"),
        field("with_tax", "formula", result_type="decimal", scale=2,
              expression="record.total * 1.005"),
        field("fee", "decimal", scale=2)))
    rec = create(world, "order", lines=[{"price": "5"}, {"price": "1.2"}], fee=3)
    assert rec["total"] == "6.20"
    assert rec["with_tax"] == "6.23"  # 6.231 rounded half up, from this save's total
    assert rec["fee"] == "3.00" and rec["lines"][0]["price"] == "5.00"
    rec = update(world, "order", rec, lines=[{"price": "2.69"}])
    assert rec["total"] == "2.69" and rec["with_tax"] == "2.70"  # 2.70345 → 2.70
    half = update(world, "order", rec, lines=[{"price": "2.69"}, {"price": "-0.02"}])
    assert half["with_tax"] == "2.68"  # 2.6767 → 2.68


def test_rollups_over_forms_start_at_zero_and_change_in_one_update(world):
    world.publish(form_body("account", field("name")))
    world.publish(form_body("deal", field("account", "relation", target="account"),
                            field("amount", "currency")))
    world.publish(form_body(
        "account", field("name"),
        field("deals", "rollup", source={"form": "deal", "via": "account"}),
        field("total", "rollup", source={"form": "deal", "via": "account"}, aggregate="sum",
              field="amount"),
        field("biggest", "rollup", source={"form": "deal", "via": "account"}, aggregate="max",
              field="amount")))
    acc = create(world, "account", name="A")
    assert (acc["deals"], acc["total"], acc["biggest"]) == (0, "0.00", None)
    create(world, "deal", account=acc["id"], amount="10")
    after = get(world, "account", acc)
    assert (after["deals"], after["total"], after["biggest"]) == (2 - 1, "10.00", "10.00")
    assert after["version"] == acc["version"] + 1  # three rollups, one new version


def test_publishing_new_computed_fields_fills_existing_records(world):
    world.publish(form_body("order", field("title"),
                            field("lines", "sub_table", fields=[field("qty", "integer")])))
    first = create(world, "order", title="a", lines=[{"qty": 2}, {"qty": 3}])
    world.clock.advance(days=1)
    second = create(world, "order", title="b", lines=[])
    world.publish(form_body(
        "order", field("title"), field("lines", "sub_table", fields=[field("qty", "integer")]),
        field("qty", "rollup", source={"sub_table": "lines"}, aggregate="sum", field="qty",
              scale=0),
        field("no", "autonumber", pattern="O{seq:3}"),
        field("shout", "formula", result_type="text", expression="upper(record.title)")))
    a, b = get(world, "order", first), get(world, "order", second)
    assert (a["qty"], a["no"], a["shout"]) == ("5", "O001", "A")
    assert (b["qty"], b["no"], b["shout"]) == ("0", "O002", "B")
    assert create(world, "order", title="c")["no"] == "O003"


@pytest.mark.parametrize("bad,message", [
    (field("lines", "sub_table", fields=[field("tags", "multi_relation", target="x")]),
     "cannot be inside a sub-table"),
    (field("lines", "sub_table", fields=[field("sku", unique=True)]), "cannot be unique"),
    (field("n", "rollup", source={"sub_table": "lines"}, filter={"field": "a", "op": "eq",
                                                                 "value": 1}),
     "cannot have a filter"),
])
def test_definitions_the_engine_cannot_honour_are_refused(world, bad, message):
    from tangram.errors import DefinitionInvalid

    with pytest.raises(DefinitionInvalid) as info:
        world.publish(form_body("t", field("lines", "sub_table", fields=[field("a")]), bad)
                      if bad["key"] != "lines" else form_body("t", bad))
    assert message in str(info.value.errors)


class _OwnAccountsOnly:
    """A policy: accounts are visible to their owner only, their 'limit' is hidden."""

    def check_form_action(self, actor, app, form, action):
        return None

    def row_predicate(self, actor, app, form, table, action):
        return table.c.owner == actor.id if form == "account" else None

    def check_row(self, actor, app, form, row, action):
        return None

    def field_access(self, actor, app, form):
        return {"limit": "hidden"} if form == "account" else {}


def test_relation_paths_respect_the_targets_scope_and_hidden_fields(world, engine):
    import uuid

    from tangram.engines.context import Actor
    from tangram.engines.directory import users_table
    from tangram.errors import PermissionDenied

    rep_a, rep_b = Actor(id=uuid.uuid4(), username="a"), Actor(id=uuid.uuid4(), username="b")
    with engine.begin() as conn:
        for rep in (rep_a, rep_b):
            conn.execute(users_table.insert().values(
                id=rep.id, username=rep.username, display_name=rep.username,
                created_at=world.clock.now(), updated_at=world.clock.now()))
    world.publish(form_body("account", field("industry"), field("limit", "integer")))
    world.publish(form_body("lead", field("name"), field("account", "relation",
                                                          target="account")))
    mine = world.run(records.create_record, app="demo", form="account",
                     data={"industry": "auto"}, actor=rep_a)
    theirs = world.run(records.create_record, app="demo", form="account",
                       data={"industry": "auto"}, actor=rep_b)
    for acc in (mine, theirs):
        world.run(records.create_record, app="demo", form="lead",
                  data={"name": acc["id"][:4], "account": acc["id"]})

    def names(actor, flt):
        with world.sessions.begin() as s:
            ctx = world.ctx(s, actor)
            ctx.policy = _OwnAccountsOnly()
            page = records.list_records(ctx, app="demo", form="lead",
                                        query=ListQuery(filter=flt, sort=["name"]))
        return [r["name"] for r in page["items"]]

    by_industry = {"field": "account.industry", "op": "eq", "value": "auto"}
    assert names(rep_a, by_industry) == [mine["id"][:4]]  # rep b's account is invisible
    assert names(rep_b, by_industry) == [theirs["id"][:4]]
    with pytest.raises(PermissionDenied):
        names(rep_a, {"field": "account.limit", "op": "gt", "value": 1})
