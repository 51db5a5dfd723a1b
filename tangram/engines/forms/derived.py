"""What computed fields give away: a formula, rollup, default or sub-table
column that reads a field hidden from a viewer is hidden from that viewer too.

Field rules hide a field's value; a computed field over it would show the
value again, or enough of it (an account's level "vip" says its signed
contracts add up to a million). So the hidden set a policy computes from a
viewer's roles is closed over the fields' sources:

- a formula reads fields of its own record (``record.x``, ``old.x``; the
  whole record when it uses ``record`` as a whole: ``record["am" + "ount"]``),
  and so does a field's ``default_expr`` (its stored value is computed from
  them unless someone typed one);
- a rollup reads a field of another form's records (``source.form`` through
  ``via``) or a sub-table of its own record, and the fields of its filter;
- a sub-table reads the fields of its record that its columns' formulas and
  defaults read (``parent.amount * row.qty``). Reads hide whole fields — a
  record read, export, print, report or flow view leaves out a hidden key,
  not columns of its rows — so a sub-table with one column computed from a
  hidden field is hidden as a whole, and so is every rollup over it.

    hidden = hidden_by_sources(runtime, {"signed_total"}, hidden_in=lambda form: ...)
    # {"signed_total", "level"}

The closure is transitive (a formula over a rollup over a hidden field) and
follows other forms through ``hidden_in``, which gives the viewer's hidden
fields of another form (the caller guards against cycles between forms).
"""

from __future__ import annotations

from collections.abc import Callable

from tangram.engines.expressions import CompiledExpression
from tangram.engines.forms.records import filter_fields
from tangram.engines.forms.registry import FormRuntime
from tangram.metamodel import fields as fm

HiddenIn = Callable[[str], set[str]]


def sources(rt: FormRuntime) -> dict[str, list[tuple[str | None, str]]]:
    """Per field computed from others (formulas, rollups, defaults, sub-tables
    whose columns read their record), what it reads: ``(None, key)`` a field
    of the same record, ``(form, key)`` a field of another form's records
    (worked out once per published version: the runtime keeps it)."""
    if rt.derived_sources is not None:
        return rt.derived_sources
    out: dict[str, list[tuple[str | None, str]]] = {}
    keys = [f.key for f in rt.form.fields]
    for f in rt.form.fields:
        if isinstance(f, fm.RollupField):
            if f.source.sub_table:
                out[f.key] = [(None, f.source.sub_table)]
            elif f.source.form:
                # "id": which records there are — what a count gives away about
                # a form the viewer may not read at all.
                read = ["id", *([f.field] if f.field else [])]
                read += sorted(filter_fields(f.filter))
                out[f.key] = [(f.source.form, k) for k in read]
            continue
        # Reading the record as a whole reads every field but this one.
        others = [k for k in keys if k != f.key]
        if isinstance(f, fm.SubTableField):
            sub = rt.validator.sub_tables.get(f.key)
            exprs = [e for c in (sub.fields.values() if sub else ())
                     for e in (c.formula, c.default_expr)]
            names: tuple[str, ...] = ("parent",)
        else:
            plan = rt.validator.fields.get(f.key)
            exprs = [plan.formula, plan.default_expr] if plan else []
            names = ("record", "old")
        fields = set().union(*(_reads(e, names, others) for e in exprs))
        if fields:
            out[f.key] = [(None, k) for k in sorted(fields)]
    rt.derived_sources = out
    return out


def _reads(expr: CompiledExpression | None, names: tuple[str, ...],
           every: list[str]) -> set[str]:
    """Field keys ``expr`` reads on the variables ``names`` — all of ``every``
    for a variable it uses as a whole (a computed key may name any field)."""
    if expr is None:
        return set()
    out: set[str] = set()
    for name in names:
        if name in expr.whole_variables:
            return set(every)
        out |= expr.referenced_fields.get(name, set())
    return out


def hidden_by_sources(rt: FormRuntime, hidden: set[str], *, hidden_in: HiddenIn,
                      keep: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """``hidden`` and every field of ``rt`` computed from a hidden field (see
    :func:`sources`), directly or through other such fields; fields in
    ``keep`` (a role rules them explicitly) are never added, so what reads
    them is judged by that rule."""
    reads = sources(rt)
    if not reads:
        return set(hidden)
    out = set(hidden)
    other: dict[str, set[str]] = {}

    def is_hidden(form: str | None, key: str) -> bool:
        if form is None:
            return key in out
        if form not in other:
            other[form] = hidden_in(form)
        return key in other[form]

    changed = True
    while changed:
        changed = False
        for key, read in reads.items():
            if key not in out and key not in keep and any(is_hidden(form, k)
                                                          for form, k in read):
                out.add(key)
                changed = True
    return out
