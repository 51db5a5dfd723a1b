"""The order of a save's computed values across a record and its sub-table
rows: record formulas, rollups over a sub-table and the rows' formula
columns, each after what it reads (``parent.total`` after ``total``, after
the rollup it reads, after the row formula that rollup adds up). Worked out
once per form version by the validator; a cycle is a publish error.

    steps = compute_order(form, plans, sub_plans, errors)
    [s.name for s in steps]   # ["lines.amount", "subtotal", "total", "lines.share"]
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tangram.errors import ErrorItem
from tangram.metamodel import fields as fm
from tangram.metamodel.forms import Form

if TYPE_CHECKING:
    from tangram.engines.expressions import CompiledExpression
    from tangram.engines.forms.validation import FieldPlan, SubTablePlan

# Functions over sub-table rows that name the column they read: ``sum_of(rows, "amount")``.
_ROW_AGGREGATES = frozenset({"sum_of", "avg_of", "min_of", "max_of", "count_if"})


def _table_reads(tree: ast.expr, roots: frozenset[str]) -> dict[str, set[str] | None]:
    """Per field read on ``roots`` (``record.lines``, ``parent.lines``), the
    columns of its rows the expression reads when it only passes it to row
    aggregates with a literal column (``sum_of(record.lines, "amount")``;
    ``count_of`` reads none), else None (any column)."""
    out: dict[str, set[str] | None] = {}
    named: set[int] = set()

    def table(node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in roots:
            return node.attr
        return None

    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
            continue
        key = table(node.args[0])
        if key is None:
            continue
        if node.func.id == "count_of":
            cols: set[str] | None = set()
        elif node.func.id in _ROW_AGGREGATES and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            cols = {node.args[1].value}
        else:
            continue
        named.add(id(node.args[0]))
        seen = out.get(key, set())
        out[key] = None if seen is None or cols is None else seen | cols
    for node in ast.walk(tree):
        key = table(node)
        if key is not None and id(node) not in named:
            out[key] = None
    return out


@dataclass(frozen=True)
class ComputeStep:
    """One computed value of a save: a record formula (``sub`` None), a
    sub-table rollup, or a formula column ``key`` of the rows of ``sub``."""

    kind: str  # "formula" | "rollup" | "row"
    key: str
    sub: str | None = None

    @property
    def name(self) -> str:
        return f"{self.sub}.{self.key}" if self.sub else self.key


def compute_order(form: Form, fields: dict[str, FieldPlan],
                   sub_tables: dict[str, SubTablePlan], errors: list[ErrorItem]
                   ) -> list[ComputeStep]:
    """Record formulas, sub-table rollups and row formulas in one dependency
    order across both levels: a row formula reading ``parent.total`` comes
    after ``total``, which comes after the rollup it reads, which comes after
    the row formula it adds up. A cycle (through either level) is a
    ``formula_cycle`` error naming its fields.

    Reading a sub-table as a whole (``sum_of(record.lines, "amount")``) depends
    on the formula columns named that way; where the column cannot be told
    (``record.lines`` used otherwise) the rows' formulas go first when they do
    not themselves read the reader — never a cycle."""
    steps: dict[str, ComputeStep] = {}
    paths: dict[str, str] = {}
    exprs: dict[str, CompiledExpression] = {}
    for i, f in enumerate(form.fields):
        plan = fields[f.key]
        if plan.formula is not None:
            steps[f.key] = ComputeStep("formula", f.key)
            paths[f.key] = f"$.fields[{i}].expression"
            exprs[f.key] = plan.formula
        elif isinstance(f, fm.RollupField) and f.source.sub_table:
            steps[f.key] = ComputeStep("rollup", f.key)
            paths[f.key] = f"$.fields[{i}]"
        elif f.key in sub_tables:
            for j, sf in enumerate(sub_tables[f.key].definition.fields):
                formula = sub_tables[f.key].fields[sf.key].formula
                if formula is not None:
                    step = ComputeStep("row", sf.key, f.key)
                    steps[step.name] = step
                    paths[step.name] = f"$.fields[{i}].fields[{j}].expression"
                    exprs[step.name] = formula

    def columns(sub: str, cols: set[str] | None) -> list[str]:
        return [f"{sub}.{c}" for c in sub_tables[sub].fields
                if (cols is None or c in cols) and f"{sub}.{c}" in steps]

    hard: dict[str, list[str]] = {name: [] for name in steps}
    soft: dict[str, list[str]] = {name: [] for name in steps}
    for name, step in steps.items():
        if step.kind == "rollup":
            rollup = form.field(step.key)
            assert isinstance(rollup, fm.RollupField)
            hard[name] = columns(rollup.source.sub_table or "", {rollup.field or ""}) \
                if rollup.source.sub_table in sub_tables else []
            continue
        expr = exprs[name]
        refs = expr.referenced_fields
        own = ("row", "record") if step.sub else ()
        parent = "parent" if step.sub else "record"
        if step.sub:
            hard[name] += [f"{step.sub}.{k}" for k in sorted(set().union(
                *(refs.get(r, set()) for r in own))) if f"{step.sub}.{k}" in steps]
        reads = _table_reads(expr.tree, frozenset({parent}))
        for key in sorted(refs.get(parent, set())):
            if key in sub_tables:
                cols = reads.get(key)
                if cols is None:
                    soft[name] += [c for c in columns(key, None) if c != name]
                else:
                    hard[name] += columns(key, cols)
            elif key in steps:
                hard[name].append(key)

    # Cycles are judged on the named dependencies only.
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + [name]
            errors.append(ErrorItem(code="formula_cycle", path=paths[cycle[0]], message=(
                "formulas and rollups refer to each other in a cycle: " + " → ".join(cycle))))
            return
        state[name] = 1
        for dep in hard[name]:
            visit(dep, chain + [name])
        state[name] = 2

    for name in steps:
        visit(name, [])
    if any(e.code == "formula_cycle" for e in errors):
        return []

    edges = {name: list(deps) for name, deps in hard.items()}

    def reaches(start: str, goal: str) -> bool:
        todo, seen = [start], set()
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges[node])
        return False

    for name, deps in soft.items():
        for dep in deps:
            if not reaches(dep, name):
                edges[name].append(dep)
    order: list[ComputeStep] = []
    done: set[str] = set()

    def place(name: str) -> None:
        if name in done:
            return
        done.add(name)
        for dep in edges[name]:
            place(dep)
        order.append(steps[name])

    for name in steps:
        place(name)
    return order
