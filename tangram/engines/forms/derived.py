"""What computed fields give away: a formula or rollup that reads a field
hidden from a viewer is hidden from that viewer too.

Field rules hide a field's value; a computed field over it would show the
value again, or enough of it (an account's level "vip" says its signed
contracts add up to a million). So the hidden set a policy computes from a
viewer's roles is closed over the fields' sources:

- a formula reads fields of its own record (``record.x``);
- a rollup reads a field of another form's records (``source.form`` through
  ``via``) or a sub-table of its own record, and the fields of its filter.

    hidden = hidden_by_sources(runtime, {"signed_total"}, hidden_in=lambda form: ...)
    # {"signed_total", "level"}

The closure is transitive (a formula over a rollup over a hidden field) and
follows other forms through ``hidden_in``, which gives the viewer's hidden
fields of another form (the caller guards against cycles between forms).
"""

from __future__ import annotations

from collections.abc import Callable

from tangram.engines.forms.records import filter_fields
from tangram.engines.forms.registry import FormRuntime
from tangram.metamodel import fields as fm

HiddenIn = Callable[[str], set[str]]


def sources(rt: FormRuntime) -> dict[str, list[tuple[str | None, str]]]:
    """Per computed field, what it reads: ``(None, key)`` a field of the same
    record, ``(form, key)`` a field of another form's records (worked out once
    per published version: the runtime keeps it)."""
    if rt.derived_sources is not None:
        return rt.derived_sources
    out: dict[str, list[tuple[str | None, str]]] = {}
    plans = rt.validator.fields
    for f in rt.form.fields:
        if isinstance(f, fm.FormulaField):
            plan = plans.get(f.key)
            formula = plan.formula if plan is not None else None
            if formula is not None:
                out[f.key] = [(None, k) for k in sorted(formula.referenced_fields.get(
                    "record", set()))]
        elif isinstance(f, fm.RollupField):
            if f.source.sub_table:
                out[f.key] = [(None, f.source.sub_table)]
            elif f.source.form:
                # "id": which records there are — what a count gives away about
                # a form the viewer may not read at all.
                read = ["id", *([f.field] if f.field else [])]
                read += sorted(filter_fields(f.filter))
                out[f.key] = [(f.source.form, k) for k in read]
    rt.derived_sources = out
    return out


def hidden_by_sources(rt: FormRuntime, hidden: set[str], *, hidden_in: HiddenIn,
                      keep: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """``hidden`` and every computed field of ``rt`` that reads a hidden field,
    directly or through other computed fields; fields in ``keep`` (a role
    rules them explicitly) are never added, so what reads them is judged by
    that rule."""
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
