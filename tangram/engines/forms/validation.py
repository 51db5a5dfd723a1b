"""Record validation, compiled once per form version.

``compile_validator(form)`` turns a form definition into closures (per-field
converters and checks, compiled expressions for defaults, conditions,
formulas and rules). ``validate()`` then runs them over one record and
returns the clean values plus *every* error at once, each with a field path
(``lines[2].qty``), a machine code and a localized message.

Checks that need the database (relation targets exist, uniqueness) are not
done here: ``validate()`` reports what to look up in ``Outcome.references``
and the records service checks them in one query per kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tangram.engines.expressions import (
    CompiledExpression,
    EvalContext,
    ExpressionError,
    compile_expression,
    format_value,
)
from tangram.engines.forms.compute_order import ComputeStep, compute_order
from tangram.engines.forms.fieldtypes import FIELD_KINDS, CompiledField, FieldProblem
from tangram.errors import DefinitionInvalid, ErrorItem
from tangram.i18n import message
from tangram.metamodel import fields as fm
from tangram.metamodel.common import localize
from tangram.metamodel.forms import Form

EXPRESSION_NAMES = ("record", "old", "user", "row", "parent")


@dataclass
class FieldPlan:
    compiled: CompiledField
    label: dict[str, str]
    required: bool
    read_only: bool
    computed: bool
    required_when: CompiledExpression | None
    visible_when: CompiledExpression | None
    default_expr: CompiledExpression | None
    default: Any
    formula: CompiledExpression | None = None

    def __post_init__(self) -> None:
        # Flattened for the per-record hot loops.
        self.convert = self.compiled.convert
        self.checks = tuple(self.compiled.checks)
        self.reference = self.compiled.reference
        self.normalize = self.compiled.kind.normalizer(self.compiled.definition)
        self.accept = _accepting(self.convert, self.checks, self.normalize)


class CheckFailed(Exception):
    """A converted value failed one of its field's checks."""

    def __init__(self, value: Any, problem: tuple[str, dict[str, Any]]) -> None:
        self.value, self.problem = value, problem


def _accepting(convert: Callable[[Any], Any],
               checks: tuple[Callable[[Any], tuple[str, dict[str, Any]] | None], ...],
               normalize: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """One function per field for the common case — a given value that is
    converted, checked and normalized: returns the stored value, raises
    FieldProblem (not convertible) or CheckFailed."""
    if not checks and normalize is None:
        return convert
    if len(checks) == 1 and normalize is None:
        check = checks[0]

        def accept_one(raw: Any) -> Any:
            value = convert(raw)
            problem = check(value)
            if problem is not None:
                raise CheckFailed(value, problem)
            return value
        return accept_one

    def accept(raw: Any) -> Any:
        value = convert(raw)
        for check in checks:
            problem = check(value)
            if problem is not None:
                raise CheckFailed(value, problem)
        return value if normalize is None else normalize(value)
    return accept


@dataclass
class RulePlan:
    check: CompiledExpression
    when: CompiledExpression | None
    message: dict[str, str]
    fields: list[str]
    label: dict[str, str]  # names the rule when it cannot be evaluated


def _rule_label(rule: fm.FormRule) -> dict[str, str]:
    """「规则“amount_positive”」/ "rule 'amount_positive'" — by key, else by message."""
    zh = rule.key or localize(rule.message, "zh")
    en = rule.key or localize(rule.message, "en")
    return {"zh": f"规则“{zh}”", "en": f"Rule “{en}”"}


@dataclass
class SubTablePlan:
    definition: fm.SubTableField
    fields: dict[str, FieldPlan]
    rules: list[RulePlan]
    formulas: list[str]


@dataclass
class Outcome:
    """What validate() found: clean values (only fields that are set or
    changed), errors, and the ids to check in the database."""

    values: dict[str, Any]
    errors: list[ErrorItem]
    # ("relation", target_form) | "user" | "department" | "file" -> {id: [field paths]}
    references: dict[Any, dict[uuid.UUID, list[str]]] = field(default_factory=dict)
    sub_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _RowState:
    """A sub-table row during one save: its values, the fields this write
    gave it, its stored version, where its errors point, what its
    expressions see; ``touched``: sent in this write (else only its formulas
    are computed again)."""

    row: dict[str, Any]
    given: set[str]
    old: Mapping[str, Any] | None
    prefix: str
    variables: dict[str, Any]
    touched: bool = True


def _compile(source: str | None, where: str, errors: list[ErrorItem]
             ) -> CompiledExpression | None:
    if not source:
        return None
    try:
        return compile_expression(source, allowed_names=EXPRESSION_NAMES)
    except ExpressionError as exc:
        errors.append(ErrorItem(code="expression_invalid", path=where, message=str(exc)))
        return None


def _plan_field(f: fm.FieldBase, where: str, errors: list[ErrorItem]) -> FieldPlan:
    kind = FIELD_KINDS[f.type]  # type: ignore[attr-defined]
    default = f.default
    if default is not None and not kind.computed:
        try:
            default = kind.convert(f, default)
        except FieldProblem as exc:
            errors.append(ErrorItem(code="default_invalid", path=f"{where}.default",
                                    message=f"default of {f.key!r} is not valid: {exc.code}"))
    plan = FieldPlan(
        compiled=kind.compile(f), label=f.label, required=f.required,
        read_only=f.read_only or kind.computed, computed=kind.computed,
        required_when=_compile(f.required_when, f"{where}.required_when", errors),
        visible_when=_compile(f.visible_when, f"{where}.visible_when", errors),
        default_expr=_compile(f.default_expr, f"{where}.default_expr", errors),
        default=default,
    )
    if isinstance(f, fm.FormulaField):
        plan.formula = _compile(f.expression, f"{where}.expression", errors)
    return plan


def _shown(value: Any) -> str:
    """A formula result as an error message shows it: as the docs write values,
    and cut short (a result may have thousands of digits)."""
    text = format_value(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _plan_rules(rules: list[fm.FormRule], where: str, errors: list[ErrorItem]
                ) -> list[RulePlan]:
    out = []
    for i, rule in enumerate(rules):
        check = _compile(rule.assert_, f"{where}[{i}].assert", errors)
        when = _compile(rule.when, f"{where}[{i}].when", errors)
        if check is not None:
            out.append(RulePlan(check=check, when=when, message=rule.message,
                                fields=list(rule.fields), label=_rule_label(rule)))
    return out


class RecordValidator:
    """Validation of one form version; build with :func:`compile_validator`."""

    def __init__(self, form: Form) -> None:
        errors: list[ErrorItem] = []
        self.form = form
        self.fields: dict[str, FieldPlan] = {}
        self.sub_tables: dict[str, SubTablePlan] = {}
        for i, f in enumerate(form.fields):
            where = f"$.fields[{i}]"
            self.fields[f.key] = _plan_field(f, where, errors)
            if isinstance(f, fm.SubTableField):
                sub_plans = {sf.key: _plan_field(sf, f"{where}.fields[{j}]", errors)
                             for j, sf in enumerate(f.fields)}
                self.sub_tables[f.key] = SubTablePlan(
                    definition=f, fields=sub_plans,
                    rules=_plan_rules(f.rules, f"{where}.rules", errors), formulas=[])
        # Every computed value of a save, both levels, in dependency order.
        self.steps: list[ComputeStep] = compute_order(form, self.fields, self.sub_tables, errors)
        self.formulas = [s.key for s in self.steps if s.kind == "formula"]
        for step in self.steps:
            if step.sub is not None:
                self.sub_tables[step.sub].formulas.append(step.key)
        # Sub-tables whose formulas read their record: a change of the record
        # alone computes their rows again.
        self._parent_readers = frozenset(
            key for key, sub in self.sub_tables.items()
            if any(p.formula is not None and "parent" in p.formula.referenced_fields
                   for p in sub.fields.values()))
        # Only fields with a condition or a required flag need the conditions
        # pass; most fields of a typical form have neither (hot path).
        self._conditional = {k: p for k, p in self.fields.items()
                             if p.visible_when or p.required_when or p.required}
        self._sub_keys = frozenset(self.sub_tables)
        # Fields whose given value only needs plan.accept (the hot path).
        self._simple = {k: p.accept for k, p in self.fields.items()
                        if not p.read_only and k not in self._sub_keys and p.reference is None}
        self._rollups = {f.key: f for f in form.fields if isinstance(f, fm.RollupField)
                         and f.source.sub_table}
        self._defaulted = [(k, p) for k, p in self.fields.items()
                           if p.formula is None and k not in self._sub_keys
                           and (p.default is not None or p.default_expr is not None)]
        self.rules = _plan_rules(form.rules, "$.rules", errors)
        self.lock_when = _compile(form.lock.when, "$.lock.when", errors) if form.lock else None
        self._check_rule_fields(errors)
        if errors:
            raise DefinitionInvalid(f"form {form.key!r} has invalid expressions or rules",
                                    errors=errors)

    @property
    def stored_computed(self) -> list[str]:
        """Computed fields the validator fills in: formulas, sub-table rollups."""
        return [s.key for s in self.steps if s.sub is None]

    def _check_rule_fields(self, errors: list[ErrorItem]) -> None:
        for i, rule in enumerate(self.form.rules):
            for key in rule.fields:
                if key not in self.fields:
                    errors.append(ErrorItem(code="unknown_field", path=f"$.rules[{i}].fields",
                                            message=f"rule names unknown field {key!r}"))

    # -- validation ----------------------------------------------------------

    def validate(self, data: Mapping[str, Any], *, old: Mapping[str, Any] | None,
                 user: Mapping[str, Any], eval_context: EvalContext, language: str = "zh",
                 allow_read_only: bool = False, recompute: bool = False,
                 filled: frozenset[str] = frozenset()) -> Outcome:
        """Validate ``data`` (a create when ``old`` is None, else a partial update;
        ``recompute`` refreshes every computed value, for backfills).

        >>> v = compile_validator(form)                              # doctest: +SKIP
        >>> v.validate({"amount": "12.5"}, old=None, user={}, eval_context=ctx).errors
        []
        """
        errors: list[ErrorItem] = []
        out = Outcome(values={}, errors=errors)
        creating = old is None
        merged: dict[str, Any] = dict(old) if old else {}
        given: set[str] = set()
        sub_raw: dict[str, Any] = {}
        fields, sub_keys = self.fields, self._sub_keys

        # This loop and the checks loop below run for every field of every
        # record written (imports: millions); keep them free of calls that are
        # not needed.
        simple = self._simple
        for key, raw in data.items():
            accept = simple.get(key)
            if accept is not None:
                # A plain field (not read-only, no sub-rows, no reference).
                given.add(key)
                cls = raw.__class__
                if raw is None or ((cls is str or cls is list or cls is dict) and not raw):
                    merged[key] = None
                    continue
                try:
                    merged[key] = accept(raw)
                except FieldProblem as exc:
                    merged[key] = None
                    failing = fields[key]
                    params = {"expected": failing.compiled.kind.expected, **exc.params}
                    errors.append(self._error(key, exc.code, language, label=failing.label,
                                              **params))
                except CheckFailed as failed:
                    merged[key] = failed.value
                    errors.append(self._error(key, failed.problem[0], language,
                                              label=fields[key].label, **failed.problem[1]))
                continue
            plan = fields.get(key)
            if plan is None:
                errors.append(self._error(key, "unknown_field", language, field=key))
                continue
            if plan.read_only and not allow_read_only and key not in filled:
                errors.append(self._error(key, "read_only", language, label=plan.label))
                continue
            given.add(key)
            if key in sub_keys:
                # Rows are read once the record's own values and defaults are
                # in: a new row's default may read them (``parent.due_date``).
                sub_raw[key] = raw
                continue
            cls = raw.__class__
            if raw is None or ((cls is str or cls is list or cls is dict) and not raw):
                merged[key] = None
                continue
            try:
                value = merged[key] = plan.convert(raw)
            except FieldProblem as exc:
                merged[key] = None
                params = {"expected": plan.compiled.kind.expected, **exc.params}
                errors.append(self._error(key, exc.code, language, label=plan.label, **params))
                continue
            # Checks run right away on given values (a later condition may
            # only clear them); defaults and formulas are checked below.
            for check in plan.checks:
                problem = check(value)
                if problem is not None:
                    errors.append(self._error(key, problem[0], language, label=plan.label,
                                              **problem[1]))
                    break
            else:
                if plan.normalize is not None:
                    merged[key] = plan.normalize(value)
                if plan.reference is not None:
                    self._collect_reference(key, plan, value, out)
        checked = set(given)

        if creating:
            for key in self._sub_keys:
                merged.setdefault(key, [])
            for key, plan in self._defaulted:
                if key in given:
                    continue
                value = self._default(key, plan, {"record": merged, "old": old, "user": user},
                                      eval_context, language, errors)
                merged[key] = value
                if value is not None:
                    given.add(key)

        variables = {"record": merged, "old": old, "user": user}
        tables: dict[str, list[_RowState]] = {}
        for key, raw in sub_raw.items():
            tables[key] = self._rows_given(key, raw, merged, old, user, eval_context, language,
                                           out)
            merged[key] = out.sub_rows[key] = [state.row for state in tables[key]]
        if not creating and old:
            # The rows are not sent, but their formulas read the record, which
            # this write may change (``parent.total``): computed again below.
            for key in (self.sub_tables if recompute else self._parent_readers):
                if key not in tables and old.get(key):
                    states = tables[key] = []
                    for i, stored in enumerate(old[key]):
                        row = dict(stored)
                        states.append(_RowState(
                            row=row, given=set(), old=stored, prefix=f"{key}[{i}].",
                            variables={"record": row, "row": row, "parent": merged,
                                       "old": stored, "user": user}, touched=False))
                    merged[key] = out.sub_rows[key] = [state.row for state in tables[key]]
                    given.add(key)
        computed = {s.key: merged.get(s.key) for s in self.steps if s.sub is None}
        # Computed values in dependency order, then the conditions (which see
        # them); a condition that clears a value makes the values computed again.
        every_rollup = creating or recompute
        late = self._compute(merged, tables, every_rollup, variables, eval_context, language)
        cleared = False
        if self._conditional:
            cleared = self._conditions(self._conditional, merged, given, variables, "",
                                       eval_context, language, errors, creating)
        for key, states in tables.items():
            plans = self.sub_tables[key].fields
            for state in states:
                if state.touched:
                    cleared |= self._conditions(plans, state.row, state.given, state.variables,
                                                state.prefix, eval_context, language, errors,
                                                True)
        if cleared:
            late = self._compute(merged, tables, every_rollup, variables, eval_context, language)
        errors.extend(late)
        for key, before in computed.items():
            if creating or merged.get(key) != before:
                given.add(key)
                if key in self._rollups:
                    checked.add(key)  # a rollup has no checks of its own
        for key in given - checked:
            value = merged.get(key)
            if value is None or key in sub_keys:
                continue
            merged[key] = self._run_checks(key, fields[key], value, language, errors, out)
        for key, states in tables.items():
            sub_plan = self.sub_tables[key]
            for state in states:
                # Rows this write did not send: only their computed values are judged.
                names = sub_plan.fields if state.touched else sub_plan.formulas
                for fkey in names:
                    fplan = sub_plan.fields[fkey]
                    value = state.row.get(fkey)
                    if value is not None and not fplan.compiled.kind.is_empty(value):
                        state.row[fkey] = self._run_checks(state.prefix + fkey, fplan, value,
                                                           language, errors, out)
                if state.touched:
                    self._rules(sub_plan.rules, state.variables, state.prefix, eval_context,
                                language, errors)
        if self.rules:
            self._rules(self.rules, variables, "", eval_context, language, errors)
        out.values = {k: merged.get(k) for k in given}
        return out

    def locked(self, record: Mapping[str, Any], *, user: Mapping[str, Any],
               eval_context: EvalContext) -> str | None:
        """Why the stored ``record`` is locked by the form's lock rule, or None.
        A rule that cannot be evaluated for the record locks it (fail closed:
        the refusal names the error, an administrator can still edit)."""
        if self.lock_when is None:
            return None
        try:
            if not self.lock_when.evaluate({"record": record, "old": record, "user": user},
                                           context=eval_context):
                return None
        except ExpressionError as exc:
            return f"its lock rule could not be evaluated ({exc})"
        return ""

    def _error(self, path: str, code: str, language: str, **params: Any) -> ErrorItem:
        if "label" in params and isinstance(params["label"], dict):
            params["label"] = localize(params["label"], language)
        return ErrorItem(field=path, code=code, message=message(code, language, **params))

    def _convert(self, path: str, key: str, plan: FieldPlan, raw: Any, language: str,
                 errors: list[ErrorItem]) -> Any:
        if raw is None or raw == "" or raw == [] or raw == {}:
            return None
        try:
            return plan.compiled.convert(raw)
        except FieldProblem as exc:
            kind = plan.compiled.kind
            params = {"expected": kind.expected, **exc.params}
            errors.append(self._error(path, exc.code, language, label=plan.label, **params))
            return None

    def _run_checks(self, path: str, plan: FieldPlan, value: Any, language: str,
                    errors: list[ErrorItem], out: Outcome) -> Any:
        """Check one value; returns it as stored (normalized) if it passed."""
        for check in plan.checks:
            problem = check(value)
            if problem is not None:
                code, params = problem
                errors.append(self._error(path, code, language, label=plan.label, **params))
                return value
        if plan.reference is not None:
            self._collect_reference(path, plan, value, out)
        return value if plan.normalize is None else plan.normalize(value)

    @staticmethod
    def _collect_reference(path: str, plan: FieldPlan, value: Any, out: Outcome) -> None:
        ids = value if isinstance(value, list) else [value]
        bucket = out.references.setdefault(plan.reference, {})
        for ident in ids:
            bucket.setdefault(ident, []).append(path)

    def _eval(self, expr: CompiledExpression, variables: Mapping[str, Any], path: str,
              label: dict[str, str], ctx: EvalContext, language: str,
              errors: list[ErrorItem]) -> Any:
        try:
            return expr.evaluate(variables, context=ctx)
        except ExpressionError as exc:
            errors.append(self._error(path, "expression", language, label=label, error=str(exc)))
            return None

    def _default(self, path: str, plan: FieldPlan, variables: Mapping[str, Any],
                 ctx: EvalContext, language: str, errors: list[ErrorItem]) -> Any:
        if plan.default_expr is not None:
            raw = self._eval(plan.default_expr, variables, path, plan.label, ctx, language,
                             errors)
            return self._convert(path, path, plan, raw, language, errors)
        return plan.default

    def _compute(self, merged: dict[str, Any], tables: Mapping[str, list[_RowState]],
                 every_rollup: bool, variables: Mapping[str, Any], ctx: EvalContext,
                 language: str) -> list[ErrorItem]:
        """Run :attr:`steps` (formulas and rollups of both levels, in dependency
        order) over ``merged`` and the rows in ``tables``; returns their errors."""
        errors: list[ErrorItem] = []
        for step in self.steps:
            if step.kind == "row":
                assert step.sub is not None
                plan = self.sub_tables[step.sub].fields[step.key]
                for state in tables.get(step.sub, ()):
                    state.row[step.key] = self._formula(state.prefix + step.key, plan,
                                                        state.variables, ctx, language, errors)
            elif step.kind == "rollup":
                rollup = self._rollups[step.key]
                sub_key = rollup.source.sub_table or ""
                if every_rollup or sub_key in tables:
                    rows = merged.get(sub_key) or []
                    merged[step.key] = rollup_value(
                        rollup.aggregate, [r.get(rollup.field) if rollup.field else 1
                                           for r in rows], rollup.scale)
            else:
                merged[step.key] = self._formula(step.key, self.fields[step.key], variables,
                                                 ctx, language, errors)
        return errors

    def _formula(self, path: str, plan: FieldPlan, variables: Mapping[str, Any],
                 ctx: EvalContext, language: str, errors: list[ErrorItem]) -> Any:
        assert plan.formula is not None
        raw = self._eval(plan.formula, variables, path, plan.label, ctx, language, errors)
        if raw is None:
            return None
        try:
            return plan.compiled.convert(raw)
        except FieldProblem as exc:
            errors.append(self._error(path, "expression", language, label=plan.label,
                                      error=f"result {_shown(raw)} is not "
                                      f"{exc.params.get('expected')}"))
            return None

    def _conditions(self, plans: dict[str, FieldPlan], merged: dict[str, Any], given: set[str],
                    variables: Mapping[str, Any], prefix: str, ctx: EvalContext,
                    language: str, errors: list[ErrorItem], creating: bool) -> bool:
        """Judge visibility and required-ness; True when a hidden field's stale
        value was cleared (what is computed from it must be computed again)."""
        # A given value that was refused (wrong type) is reported once, not
        # again as missing.
        refused = {e.field for e in errors}
        cleared = False
        for key, plan in plans.items():
            path = prefix + key
            if plan.visible_when is not None:
                visible = self._eval(plan.visible_when, variables, path, plan.label, ctx,
                                     language, errors)
                if not visible:
                    if key in given and not plan.compiled.kind.is_empty(merged.get(key)) \
                            and not plan.computed:
                        errors.append(self._error(path, "hidden", language, label=plan.label))
                    elif merged.get(key) is not None and not plan.computed:
                        merged[key] = None  # hidden now: its stale value is cleared
                        given.add(key)
                        cleared = True
                    continue
            required = plan.required
            if not required and plan.required_when is not None:
                required = bool(self._eval(plan.required_when, variables, path, plan.label, ctx,
                                           language, errors))
            # On update only complain about fields this write touches or that a
            # condition just made required — not about old data.
            if (required and not plan.computed and plan.compiled.kind.is_empty(merged.get(key))
                    and (creating or key in given or plan.required_when is not None)
                    and path not in refused):
                errors.append(self._error(path, "required", language, label=plan.label))
        return cleared

    def _rules(self, rules: list[RulePlan], variables: Mapping[str, Any], prefix: str,
               ctx: EvalContext, language: str, errors: list[ErrorItem]) -> None:
        for rule in rules:
            path = prefix + (rule.fields[0] if rule.fields else "")
            if rule.when is not None and not self._eval(rule.when, variables, path, rule.label,
                                                        ctx, language, errors):
                continue
            ok = self._eval(rule.check, variables, path, rule.label, ctx, language, errors)
            if ok is None or ok:
                continue
            text = localize(rule.message, language)
            targets: list[str | None] = list(rule.fields) or [None]
            for target in targets:
                errors.append(ErrorItem(code="rule", message=text,
                                        field=(prefix + target) if target else
                                        (prefix.rstrip(".") or None)))

    def _rows_given(self, key: str, raw: Any, merged: dict[str, Any],
                    old: Mapping[str, Any] | None, user: Mapping[str, Any],
                    ctx: EvalContext, language: str, out: Outcome) -> list[_RowState]:
        """The rows sent for sub-table ``key``: their given values converted, a
        new row's defaults filled. A default sees the row so far (``row``: the
        values sent, and the defaults of the columns before it) and the record
        (``parent``) with the values of this write and its defaults, but not
        yet its formulas and rollups (publishing refuses a default that reads
        them). Conditions, formulas, checks and rules come later (validate)."""
        plan = self.sub_tables[key]
        errors = out.errors
        label = self.fields[key].label
        if raw is None:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            errors.append(self._error(key, "type", language, label=label,
                                      expected="a list of rows"))
            return []
        sub = plan.definition
        if sub.min_rows and len(raw) < sub.min_rows:
            errors.append(self._error(key, "min_rows", language, label=label,
                                      limit=sub.min_rows))
        if sub.max_rows and len(raw) > sub.max_rows:
            errors.append(self._error(key, "max_rows", language, label=label,
                                      limit=sub.max_rows))
            return []
        old_rows = {str(r.get("id")): r for r in ((old or {}).get(key) or [])}
        rows: list[_RowState] = []
        for index, row_in in enumerate(raw):
            prefix = f"{key}[{index}]."
            row_id = row_in.get("id")
            old_row = old_rows.get(str(row_id)) if row_id else None
            row: dict[str, Any] = {"id": old_row["id"] if old_row else None}
            given: set[str] = set()
            for fkey, value in row_in.items():
                if fkey == "id":
                    continue
                fplan = plan.fields.get(fkey)
                if fplan is None:
                    errors.append(self._error(prefix + fkey, "unknown_field", language,
                                              field=fkey))
                    continue
                if fplan.computed:
                    continue  # clients echo whole rows back; computed values are ours
                if fplan.read_only:
                    if old_row is None or self._convert(prefix + fkey, fkey, fplan, value,
                                                        language, []) != old_row.get(fkey):
                        errors.append(self._error(prefix + fkey, "read_only", language,
                                                  label=fplan.label))
                    continue
                row[fkey] = self._convert(prefix + fkey, fkey, fplan, value, language, errors)
                given.add(fkey)
            variables = {"record": row, "row": row, "parent": merged, "old": old_row,
                         "user": user}
            for fkey, fplan in plan.fields.items():
                if fkey in given or fplan.formula is not None:
                    continue
                if old_row is not None:
                    row[fkey] = old_row.get(fkey)
                else:
                    row[fkey] = self._default(prefix + fkey, fplan, variables, ctx, language,
                                              errors)
                given.add(fkey)
            rows.append(_RowState(row=row, given=given, old=old_row, prefix=prefix,
                                  variables=variables))
        return rows


def compile_validator(form: Form) -> RecordValidator:
    return RecordValidator(form)


def rollup_value(aggregate: str, values: list[Any], scale: int) -> Any:
    """Aggregate sub-table values in Python (they are written with the parent)."""
    present = [v for v in values if v is not None]
    if aggregate == "count":
        return len(values)
    quantum = Decimal(1).scaleb(-scale)
    if not present:
        return None if aggregate != "sum" else Decimal(0).quantize(quantum)
    if isinstance(present[0], date):  # min/max of dates (publishing allows no other)
        return min(present) if aggregate == "min" else max(present)
    nums = [v if isinstance(v, Decimal) else Decimal(v) for v in present]
    result: Decimal
    if aggregate == "sum":
        result = sum(nums, Decimal(0))
    elif aggregate == "avg":
        result = sum(nums, Decimal(0)) / len(nums)
    elif aggregate == "min":
        result = min(nums)
    else:
        result = max(nums)
    return result.quantize(quantum, rounding=ROUND_HALF_UP)


FieldCheck = Callable[[Any], Any]
