"""Records benchmark: validation and bulk insert through the form engine.

Run: ``uv run python -m bench.records`` (PostgreSQL too when
TANGRAM_TEST_POSTGRES_URL is set). For a 30-field form it prints records
validated per second by our compiled validator and by a plain ``jsonschema``
validator of the same form, side by side, and bulk-insert rows per second
through the form engine (validation, audit, events included) vs raw
SQLAlchemy ``insert()`` executemany into the same table.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator, FormatChecker

from bench.common import best_of, databases
from tangram.engines.expressions import EvalContext
from tangram.engines.forms import records
from tangram.engines.forms.registry import get_runtime
from tangram.metamodel.forms import Form
from tests.factories import World, field, form_body

N_VALIDATE = 5000
N_INSERT = 5000
BATCH = 1000
OPTIONS = [{"value": f"o{i}", "label": {"zh": f"选项{i}", "en": f"Option {i}"}}
           for i in range(8)]


def form_definition() -> dict[str, Any]:
    fields: list[dict[str, Any]] = []
    for i in range(8):
        fields.append(field(f"text{i}", "text", max_length=100, required=i < 3))
    for i in range(5):
        fields.append(field(f"int{i}", "integer", min=0, max=1_000_000))
    for i in range(5):
        fields.append(field(f"amount{i}", "currency", min=0))
    for i in range(4):
        fields.append(field(f"choice{i}", "select", options=OPTIONS))
    for i in range(3):
        fields.append(field(f"day{i}", "date"))
    fields.append(field("email", "email"))
    fields.append(field("phone", "phone"))
    fields.append(field("flag", "boolean"))
    fields.append(field("tags", "multi_select", options=OPTIONS))
    fields.append(field("note", "long_text", max_length=2000))
    assert len(fields) == 30
    return form_body("bench", *fields)


def json_schema_of(form: dict[str, Any]) -> dict[str, Any]:
    """The same rules as a hand-written JSON Schema."""
    props: dict[str, Any] = {}
    for f in form["fields"]:
        t = f["type"]
        if t == "text":
            props[f["key"]] = {"type": "string", "maxLength": 100}
        elif t == "long_text":
            props[f["key"]] = {"type": "string", "maxLength": 2000}
        elif t == "integer":
            props[f["key"]] = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
        elif t == "currency":
            props[f["key"]] = {"type": "string", "pattern": r"^\d{1,16}(\.\d{1,2})?$"}
        elif t == "select":
            props[f["key"]] = {"enum": [o["value"] for o in OPTIONS]}
        elif t == "multi_select":
            props[f["key"]] = {"type": "array", "items": {"enum": [o["value"] for o in OPTIONS]},
                               "uniqueItems": True}
        elif t == "date":
            props[f["key"]] = {"type": "string", "format": "date"}
        elif t == "email":
            props[f["key"]] = {"type": "string", "format": "email"}
        elif t == "phone":
            props[f["key"]] = {"type": "string", "pattern": r"^(?:\+?86)?1[3-9]\d{9}$"}
        elif t == "boolean":
            props[f["key"]] = {"type": "boolean"}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [f["key"] for f in form["fields"] if f.get("required")]}


def make_rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for j in range(8):
            row[f"text{j}"] = f"文本{i}-{j}-{rnd.randint(0, 999)}"
        for j in range(5):
            row[f"int{j}"] = rnd.randint(0, 1_000_000)
        for j in range(5):
            row[f"amount{j}"] = f"{rnd.randint(0, 10**7)}.{rnd.randint(0, 99):02d}"
        for j in range(4):
            row[f"choice{j}"] = f"o{rnd.randint(0, 7)}"
        for j in range(3):
            row[f"day{j}"] = f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        row["email"] = f"user{i}@example.com"
        row["phone"] = f"13{rnd.randint(0, 999999999):09d}"
        row["flag"] = bool(i % 2)
        row["tags"] = [f"o{rnd.randint(0, 7)}"]
        row["note"] = "备注" * 10
        rows.append(row)
    return rows


def bench_validation(rows: list[dict[str, Any]]) -> tuple[float, float]:
    definition = form_definition()
    validator = __import__("tangram.engines.forms.validation", fromlist=["x"]).compile_validator(
        Form.model_validate(definition))
    ctx = EvalContext(now=datetime.now(UTC), timezone="Asia/Shanghai")
    schema_validator = Draft202012Validator(json_schema_of(definition),
                                            format_checker=FormatChecker())
    for row in rows[:50]:  # both agree that the data is valid
        assert validator.validate(row, old=None, user={}, eval_context=ctx).errors == []
        assert not list(schema_validator.iter_errors(row))

    def ours() -> None:
        for row in rows:
            validator.validate(row, old=None, user={}, eval_context=ctx)

    def theirs() -> None:
        for row in rows:
            for _ in schema_validator.iter_errors(row):
                pass

    ours_s, theirs_s = [], []
    for _ in range(3):  # interleaved so machine noise hits both
        ours_s.append(best_of(ours, 1))
        theirs_s.append(best_of(theirs, 1))
    return len(rows) / min(ours_s), len(rows) / min(theirs_s)


def bench_insert(name: str, engine: sa.Engine, rows: list[dict[str, Any]]
                 ) -> tuple[float, float]:
    world = World(engine, app="benchapp")
    world.publish(form_definition())
    with world.sessions() as s:
        rt = get_runtime(s, "benchapp", "bench")
    table = rt.table
    # Raw rows carry what the table needs: typed values and system columns.
    validated = []
    ctx = EvalContext(now=datetime.now(UTC), timezone="Asia/Shanghai")
    for row in rows:
        out = rt.validator.validate(row, old=None, user={}, eval_context=ctx)
        validated.append({k: rt.fields[k].kind.to_db(v) for k, v in out.values.items()})

    def clear() -> None:
        with engine.begin() as conn:
            conn.execute(table.delete())

    def ours() -> None:
        for start in range(0, len(rows), BATCH):
            world.run(records.bulk_create, app="benchapp", form="bench",
                      rows=rows[start:start + BATCH])

    def raw() -> None:
        from tangram.db import new_id

        now = datetime.now(UTC)
        for start in range(0, len(validated), BATCH):
            with engine.begin() as conn:
                conn.execute(table.insert(), [
                    {"id": new_id(), "created_at": now, "updated_at": now, "version": 1, **v}
                    for v in validated[start:start + BATCH]])

    ours_t, raw_t = [], []
    for _ in range(3):
        clear()
        start = time.perf_counter()
        ours()
        ours_t.append(time.perf_counter() - start)
        clear()
        start = time.perf_counter()
        raw()
        raw_t.append(time.perf_counter() - start)
    clear()
    return len(rows) / min(ours_t), len(rows) / min(raw_t)


def main() -> None:
    rows = make_rows(max(N_VALIDATE, N_INSERT))
    ours_v, schema_v = bench_validation(rows[:N_VALIDATE])
    validate_ratio = ours_v / schema_v
    print(f"validate: ours {ours_v:,.0f} records/s   jsonschema {schema_v:,.0f} records/s   "
          f"ratio {validate_ratio:.2f}")
    insert_ratios = []
    with databases() as engines:
        for name, engine in engines:
            ours_i, raw_i = bench_insert(name, engine, rows[:N_INSERT])
            ratio = ours_i / raw_i
            insert_ratios.append(ratio)
            print(f"insert [{name}]: ours {ours_i:,.0f} rows/s   raw executemany {raw_i:,.0f} "
                  f"rows/s   ratio {ratio:.2f}")
    print(f"bench.records: validate_ratio={validate_ratio:.2f} "
          f"insert_ratio={min(insert_ratios):.2f}")


if __name__ == "__main__":
    main()
