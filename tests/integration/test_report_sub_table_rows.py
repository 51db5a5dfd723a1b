"""Reports over the rows of a sub-table (``"rows": "lines"``) on SQLite and
PostgreSQL: each quote line is a report row, the quote's fields and its
relations are reachable as ``parent.…`` / ``quote.…``, the quote's row scope
applies to its lines, and a hidden field of the quote is refused.

Expected answers are computed in Python over the rows the test generated,
never from the engine's output.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.forms import records
from tangram.engines.reports import cache
from tangram.engines.reports.compiler import compile_report, validate_report
from tangram.engines.reports.results import execute
from tangram.errors import DefinitionInvalid, PermissionDenied
from tangram.metamodel.reports import Report
from tests.factories import World, field, form_body, label

REGIONS = ["华东", "华南", "华北"]
STATUSES = ["draft", "sent", "accepted"]


def opts(*values: str) -> list[dict[str, Any]]:
    return [{"value": v, "label": label(v)} for v in values]


FORMS = [
    form_body("account", field("name"), field("region")),
    form_body("quote", field("name"), field("status", "select", options=opts(*STATUSES)),
              field("account", "relation", target="account"),
              field("margin", "currency"),
              field("lines", "sub_table", fields=[
                  field("product"), field("qty", "integer"), field("price", "currency")])),
]


class QuoteScope:
    """A test policy: a rep sees only the quotes they own; ``hidden`` hides
    fields as (form, key)."""

    def __init__(self, owner: uuid.UUID, hidden: tuple[tuple[str, str], ...] = ()) -> None:
        self.owner = owner
        self.hidden = hidden

    def check_form_action(self, actor: Any, app: str, form: str, action: str) -> None:
        return None

    def row_predicate(self, actor: Any, app: str, form: str, table: sa.Table,
                      action: str) -> Any:
        return table.c.owner == self.owner if form == "quote" else None

    def check_row(self, *args: Any) -> None:
        return None

    def field_access(self, actor: Any, app: str, form: str) -> dict[str, str]:
        return {k: "hidden" for f, k in self.hidden if f == form}


@dataclass
class Quotes:
    world: World
    users: list[uuid.UUID]
    lines: list[dict[str, Any]]  # one per live line, with its quote's values

    def run(self, body: dict[str, Any], policy: Any = None) -> Any:
        report = Report.model_validate({"key": "r", "label": label("R"), "form": "quote",
                                        "rows": "lines", **body})
        with self.world.sessions.begin() as s:
            kw = {"policy": policy} if policy is not None else {}
            ctx = EngineContext(session=s, actor=self.world.actor, clock=self.world.clock,
                                language="en", **kw)
            return execute(s, compile_report(ctx, app="demo", report=report), language="en")


@pytest.fixture
def quotes(engine: Engine) -> Quotes:
    cache.clear()
    rnd = random.Random(11)
    world = World(engine)
    for body in FORMS:
        world.publish(body)
    users = []
    with world.sessions.begin() as s:
        for i in range(3):
            uid = uuid.uuid4()
            s.execute(users_table.insert().values(
                id=uid, username=f"rep{i}", display_name=f"Rep {i}",
                created_at=world.clock.now(), updated_at=world.clock.now()))
            users.append(uid)
    accounts = []
    for i in range(5):
        region = REGIONS[i % 3]
        rec = world.run(records.create_record, app="demo", form="account",
                        data={"name": f"a{i}", "region": region})
        accounts.append((str(rec["id"]), region))
    lines: list[dict[str, Any]] = []
    for i in range(30):
        account = rnd.choice([*accounts, None])
        owner = users[i % 3]
        status = rnd.choice(STATUSES)
        my_lines = [{"product": rnd.choice("pqr"), "qty": rnd.randrange(1, 6),
                     "price": str(Decimal(rnd.randrange(100, 50000)) / 100)}
                    for _ in range(rnd.randrange(0, 4))]
        rec = world.run(records.create_record, app="demo", form="quote", owner=owner, data={
            "name": f"q{i}", "status": status, "account": account[0] if account else None,
            "margin": "0.25", "lines": my_lines})
        if i % 10 == 9:  # in the recycle bin: its lines no longer count
            world.run(records.delete_record, app="demo", form="quote", record_id=rec["id"])
            continue
        for line in my_lines:
            lines.append({**line, "price": Decimal(line["price"]), "owner": owner,
                          "status": status, "region": account[1] if account else None,
                          "quote": str(rec["id"])})
    assert len(lines) > 20
    return Quotes(world=world, users=users, lines=lines)


def _group(lines: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for line in lines:
        out.setdefault(line[key], []).append(line)
    return out


def test_each_line_is_a_row_grouped_by_the_parents_relation(quotes: Quotes) -> None:
    result = quotes.run({
        "dimensions": [{"type": "value", "key": "region", "field": "parent.account.region"}],
        "measures": [{"agg": "count", "key": "n"},
                     {"agg": "sum", "key": "qty", "field": "qty"},
                     {"agg": "sum", "key": "revenue", "expression": "record.qty * record.price"},
                     {"agg": "count_distinct", "key": "quotes", "field": "parent"}]})
    got = {r["region"]: r for r in result.frame.to_dict(orient="records")}
    expected = _group(quotes.lines, "region")
    assert set(got) == set(expected)
    for region, lines in expected.items():
        row = got[region]
        assert row["n"] == len(lines)
        assert row["qty"] == sum(x["qty"] for x in lines)
        assert row["revenue"] == sum(x["qty"] * x["price"] for x in lines)
        assert row["quotes"] == len({x["quote"] for x in lines})
    assert result.totals["n"] == len(quotes.lines)
    assert result.totals["revenue"] == sum(x["qty"] * x["price"] for x in quotes.lines)


def test_form_key_names_the_parent_in_fields_and_filters(quotes: Quotes) -> None:
    result = quotes.run({
        "filter": {"and": [{"field": "quote.status", "op": "eq", "value": "accepted"},
                           {"field": "qty", "op": "gte", "value": 2}]},
        "dimensions": [{"type": "value", "key": "product", "field": "product"},
                       {"type": "value", "key": "status", "field": "quote.status"}],
        "measures": [{"agg": "sum", "key": "amount",
                      "expression": "record.qty * record.price"}]})
    kept = [x for x in quotes.lines if x["status"] == "accepted" and x["qty"] >= 2]
    expected = {(p, "accepted"): sum(x["qty"] * x["price"] for x in ls)
                for p, ls in _group(kept, "product").items()}
    got = {(r["product"], r["status"]): r["amount"]
           for r in result.frame.to_dict(orient="records")}
    assert got == expected
    labels = set(result.frame.status__label)
    assert labels <= {"accepted"}


def test_a_rep_sees_the_lines_of_their_own_quotes_only(quotes: Quotes) -> None:
    body = {"dimensions": [{"type": "value", "key": "product", "field": "product"}],
            "measures": [{"agg": "count", "key": "n"},
                         {"agg": "sum", "key": "qty", "field": "qty"}]}
    for rep in quotes.users:
        result = quotes.run(body, policy=QuoteScope(rep))
        mine = [x for x in quotes.lines if x["owner"] == rep]
        got = {r["product"]: (r["n"], r["qty"]) for r in result.frame.to_dict(orient="records")}
        assert got == {p: (len(ls), sum(x["qty"] for x in ls))
                       for p, ls in _group(mine, "product").items()}
        assert result.totals["n"] == len(mine)


def test_hidden_fields_of_the_parent_and_the_sub_table_are_refused(quotes: Quotes) -> None:
    policy = QuoteScope(quotes.users[0], (("quote", "margin"),))
    with pytest.raises(PermissionDenied) as err:
        quotes.run({"measures": [{"agg": "avg", "key": "m", "field": "parent.margin"}]},
                   policy=policy)
    assert err.value.errors[0].path == "$.measures[0].field"
    assert "quote.margin" in err.value.errors[0].message
    with pytest.raises(PermissionDenied) as err:
        quotes.run({"filter": {"field": "quote.margin", "op": "gt", "value": 0},
                    "measures": [{"agg": "count", "key": "n"}]}, policy=policy)
    assert err.value.errors[0].path == "$.filter.field"
    with pytest.raises(PermissionDenied) as err:
        quotes.run({"measures": [{"agg": "count", "key": "n"}]},
                   policy=QuoteScope(quotes.users[0], (("quote", "lines"),)))
    assert err.value.errors[0].path == "$.rows"


def test_bad_definitions_name_the_path(quotes: Quotes) -> None:
    cases = [
        ({"rows": "status"}, "$.rows", "not_a_sub_table"),
        ({"rows": "nothing"}, "$.rows", "not_a_sub_table"),
        ({"dimensions": [{"type": "value", "key": "x", "field": "qtty"}]},
         "$.dimensions[0].field", "unknown_field"),
        ({"dimensions": [{"type": "value", "key": "x", "field": "parent.lines.qty"}]},
         "$.dimensions[0].field", "to_many_through_parent"),
        ({"measures": [{"agg": "sum", "key": "x", "field": "quote.lines.qty"}]},
         "$.measures[0].field", "to_many_through_parent"),
        ({"filter": {"and": [{"field": "owner", "op": "is_empty"}]}},
         "$.filter.and[0].field", "unknown_field"),
        ({"measures": [{"agg": "sum", "key": "x", "expression": "record.parent.nme"}]},
         "$.measures[0].expression", "unknown_field"),
    ]
    with quotes.world.sessions.begin() as s:
        ctx = EngineContext(session=s, actor=quotes.world.actor, clock=quotes.world.clock)
        for change, path, code in cases:
            body = {"key": "r", "label": label("R"), "form": "quote", "rows": "lines",
                    "measures": [{"agg": "count", "key": "n"}], **change}
            report = Report.model_validate(body)
            errors = validate_report(ctx, app="demo", report=report)
            assert [(e.path, e.code) for e in errors][:1] == [(path, code)], change
            with pytest.raises(DefinitionInvalid):
                compile_report(ctx, app="demo", report=report)
    message = next(e.message for e in errors)
    assert "nme" in message and "did you mean 'name'" in message


def test_warm_compile_cache_never_shares_one_viewers_scope(quotes: Quotes) -> None:
    from tangram.engines.reports.compiler import clear_compiled, compile_stats

    clear_compiled()
    body = {"measures": [{"agg": "count", "key": "n"}, {"agg": "sum", "key": "qty",
                                                         "field": "qty"}]}
    first, second = quotes.users[0], quotes.users[1]
    a1 = quotes.run(body, policy=QuoteScope(first))
    a2 = quotes.run(body, policy=QuoteScope(first))
    assert compile_stats["hits"] == 1  # the same viewer: served compiled
    assert a2.compiled is a1.compiled
    b = quotes.run(body, policy=QuoteScope(second))
    assert b.compiled is not a1.compiled
    for rep, result in ((first, a2), (second, b)):
        mine = [x for x in quotes.lines if x["owner"] == rep]
        assert (result.totals["n"], result.totals["qty"]) == (
            len(mine), sum(x["qty"] for x in mine))
    # A field hidden from one viewer is refused even when another viewer's
    # compiled statement for the same report is warm.
    warm = {"measures": [{"agg": "max", "key": "m", "field": "parent.margin"}]}
    quotes.run(warm, policy=QuoteScope(first))
    with pytest.raises(PermissionDenied):
        quotes.run(warm, policy=QuoteScope(first, (("quote", "margin"),)))
    # A new version of the form compiles afresh.
    quotes.world.publish(form_body("quote", *FORMS[1]["fields"], field("note")))
    misses = compile_stats["misses"]
    quotes.run(body, policy=QuoteScope(first))
    assert compile_stats["misses"] == misses + 1
