"""Calculated fields: an expression over a record's fields, compiled to SQL.

A dimension or a measure may take ``"expression": "record.amount * record.probability / 100"``
instead of a ``field``. The text is parsed and checked by the expression
engine (:func:`tangram.engines.expressions.compile_expression`: the same
grammar, limits and messages as formulas and flow conditions); this module
then walks the checked tree and translates a documented subset of the
language into SQLAlchemy Core. Every literal becomes a bound parameter and
every field a column reached through a validated path, so nothing from the
expression text is ever written into the SQL.

The subset (also :data:`SQL_FUNCTIONS`, listed in ``docs/reports.md``):

- ``record.<path>`` — a field of the record or of a record reached through
  to-one relations (``record.account.industry``);
- literals: numbers, texts, ``true``/``false``/``none``, constant dates;
- ``+ - * /`` on numbers (exact decimals; a quotient keeps
  :data:`DIVISION_SCALE` decimals, empty when dividing by 0), ``+`` on texts;
- ``== != < <= > >=``, ``in`` / ``not in`` a list of literals;
- ``and``, ``or``, ``not``, ``a if c else b`` and the functions of
  :data:`SQL_FUNCTIONS`.

Each value has a class (number, text, boolean, date, datetime, reference)
and numbers a scale (decimal places). Numbers are kept in the stored
representation of :class:`tangram.db.types.ExactDecimal` — on SQLite an
integer scaled by ``10**scale`` — so that sums stay exact; literal numbers
are bound with that type, and multiplying by a literal ``1`` of scale ``k``
moves a number to ``k`` more decimals on SQLite while it is the identity on
PostgreSQL.

>>> typed = translate("record.amount * 2", field=lambda path, at: ..., today=..., now=...,
...                   timezone="Asia/Shanghai")
>>> typed.cls, typed.scale
('number', 2)
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from tangram.db.types import ExactDecimal, UTCDateTime
from tangram.engines.expressions import ExpressionError, compile_expression
from tangram.engines.reports.dialect import DateBucket, DatePart, DaysBetween, ExactDivide, RoundTo

Expr = sa.ColumnElement[Any]

NUMBER, TEXT, BOOLEAN, DATE, DATETIME, REFERENCE, NULL, ANY = (
    "number", "text", "boolean", "date", "datetime", "reference", "null", "any")
DIVISION_SCALE = 6  # decimals of a quotient (at least; more when an operand has more)
MAX_SCALE = 8  # products (and constants) with more decimals are rounded to this many
MAX_STORED = 2**63 - 1  # the largest number in its stored form (see ``fits``)
ALLOWED_VARIABLES = ("record",)


class CalcProblem(Exception):
    """An expression outside the SQL subset or with a type error."""

    def __init__(self, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Typed:
    expr: Expr
    cls: str
    scale: int = 0

    def number(self) -> bool:
        return self.cls in (NUMBER, NULL, ANY)


FieldLookup = Callable[[str, int | None], Typed]


@dataclass(frozen=True)
class SqlFunction:
    name: str
    signature: str
    description: dict[str, str]  # {"zh": …, "en": …}, as the report catalog serves it


SQL_FUNCTIONS: dict[str, SqlFunction] = {f.name: f for f in [
    SqlFunction("iif", "iif(condition, then, else)",
                {"zh": "condition 为真时取 then，否则取 else（也可写作 then if condition else "
                       "else）。",
                 "en": "then when condition is true, else otherwise (also written `then if "
                       "condition else else`)."}),
    SqlFunction("coalesce", "coalesce(value, ...)",
                {"zh": "第一个不为空的值。", "en": "The first value that is not empty."}),
    SqlFunction("is_empty", "is_empty(value)",
                {"zh": "值为空时为 true（文本为 \"\" 时也算空）。",
                 "en": "True when the value is empty (a text also when it is \"\")."}),
    SqlFunction("abs", "abs(number)",
                {"zh": "去掉正负号后的数（绝对值）。", "en": "The number without its sign."}),
    SqlFunction("round", "round(number, digits=0)",
                {"zh": "四舍五入（远离零）到 0-8 位小数，位数须为常量。",
                 "en": "Rounded half up (away from zero) to 0-8 constant decimal places."}),
    SqlFunction("upper", "upper(text)",
                {"zh": "转为大写（空值得 \"\"）。",
                 "en": "The text in capitals (empty gives \"\")."}),
    SqlFunction("lower", "lower(text)",
                {"zh": "转为小写（空值得 \"\"）。",
                 "en": "The text in small letters (empty gives \"\")."}),
    SqlFunction("trim", "trim(text)",
                {"zh": "去掉首尾的空格。",
                 "en": "The text without leading and trailing spaces."}),
    SqlFunction("concat", "concat(value, ...)",
                {"zh": "把文本、整数和日期连接成一段文本；空值视为 \"\"。",
                 "en": "Texts, integers and dates joined as text; empty values count as "
                       "\"\"."}),
    SqlFunction("year", "year(date)",
                {"zh": "日期的年份（日期时间按当地日期计）。",
                 "en": "The year of a date (a date-time: of its local date)."}),
    SqlFunction("month", "month(date)",
                {"zh": "日期的月份（1-12）。", "en": "The month, 1-12."}),
    SqlFunction("day", "day(date)",
                {"zh": "日期是当月第几天（1-31）。", "en": "The day of the month, 1-31."}),
    SqlFunction("weekday", "weekday(date)",
                {"zh": "星期几：1 = 周一 … 7 = 周日。", "en": "1 = Monday … 7 = Sunday."}),
    SqlFunction("days_between", "days_between(start, end)",
                {"zh": "从 start 到 end 相隔的天数（end 更早则为负）；日期时间按当地日期计。",
                 "en": "Calendar days from start to end (negative if end is earlier); "
                       "date-times count by their local date."}),
    SqlFunction("to_date", "to_date(datetime)",
                {"zh": "日期时间的当地日期（\"2026-01-31\" 这样的常量文本也会转为日期）。",
                 "en": "The local date of a date-time (a constant text like \"2026-01-31\" "
                       "becomes a date)."}),
    SqlFunction("today", "today()",
                {"zh": "报表运行时，组织时区下的今天。",
                 "en": "Today in the organization's time zone (when the report runs)."}),
    SqlFunction("now", "now()",
                {"zh": "报表运行时的当前时刻。",
                 "en": "The current instant (when the report runs)."}),
]}

_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">="}


def fits(value: int | Decimal, scale: int) -> bool:
    """Whether a number with ``scale`` decimals is in the range every database
    holds: on SQLite it is stored as an integer scaled by ``10**scale`` (see
    :class:`tangram.db.types.ExactDecimal`), a signed 64-bit integer."""
    return abs(Decimal(value).scaleb(scale)) <= MAX_STORED


def range_message(scale: int) -> str:
    limit = Decimal(MAX_STORED).scaleb(-scale)
    return (f"the range of a number with {scale} decimals is ±{limit:,}; a report computes "
            "within that range on every database")


def _literal_number(value: int | Decimal, position: int | None = None) -> Typed:
    if isinstance(value, int):
        if not fits(value, 0):
            raise CalcProblem("out_of_range", f"the number {value} is out of range: "
                              f"{range_message(0)}", position)
        return Typed(sa.literal(value, sa.BigInteger()), NUMBER, 0)
    if not value.is_finite():
        raise CalcProblem("out_of_range", f"{value} is not a number", position)
    exponent = value.as_tuple().exponent
    scale = max(0, -exponent) if isinstance(exponent, int) else 0
    if scale > MAX_SCALE:
        # A constant part such as 1 / 3, computed exactly when the expression
        # was compiled, keeps as many decimals as a quotient may have.
        value = value.quantize(Decimal(1).scaleb(-MAX_SCALE), rounding=ROUND_HALF_UP)
        scale = MAX_SCALE
    if not fits(value, scale):
        raise CalcProblem("out_of_range", f"the number {value} is out of range: "
                          f"{range_message(scale)}", position)
    return Typed(sa.literal(value, ExactDecimal(38, scale)), NUMBER, scale)


def rescale(t: Typed, scale: int) -> Expr:
    """``t`` as a number with ``scale`` (>= its own) decimals."""
    if t.scale >= scale or t.cls in (NULL, ANY):
        return t.expr
    return t.expr * sa.literal(1, ExactDecimal(38, scale - t.scale))


def output_type(t: Typed) -> Any:
    """The SQLAlchemy type a translated value is read with."""
    if t.cls == NUMBER:
        return ExactDecimal(38, t.scale) if t.scale else sa.BigInteger()
    return {TEXT: sa.Text(), BOOLEAN: sa.Boolean(), DATE: sa.Date(),
            DATETIME: UTCDateTime()}.get(t.cls, sa.Text())


def parse(source: str) -> ast.expr:
    """The checked tree of ``source`` (the expression engine's parser).
    Raises ExpressionError (code ``expression_invalid``)."""
    return compile_expression(source, allowed_names=ALLOWED_VARIABLES).tree


def translate(source: str, *, field: FieldLookup, today: date, now: datetime,
              timezone: str) -> Typed:
    """The SQL of ``source``; ``field(path, position)`` gives each ``record.<path>``.

    Raises ExpressionError (does not parse) or CalcProblem (outside the subset, or a
    type error)."""
    tree = parse(source)
    return _Translator(field, today, now, timezone).node(tree)


def check_subset(source: str) -> CalcProblem | ExpressionError | None:
    """The first problem of ``source`` that needs no form to find (syntax,
    functions and operators outside the subset), or None."""
    def any_field(path: str, position: int | None) -> Typed:
        return Typed(sa.null(), ANY)
    try:
        translate(source, field=any_field, today=date(2000, 1, 1),
                  now=datetime(2000, 1, 1), timezone="UTC")
    except (CalcProblem, ExpressionError) as exc:
        return exc
    return None


class _Translator:
    def __init__(self, field: FieldLookup, today: date, now: datetime, timezone: str) -> None:
        self.field, self.today, self.now, self.timezone = field, today, now, timezone

    # ---- helpers
    @staticmethod
    def _pos(node: ast.AST) -> int | None:
        return getattr(node, "col_offset", None)

    def refuse(self, node: ast.AST, message: str) -> CalcProblem:
        return CalcProblem("expression_not_supported", message + "; see \"Calculated fields\" "
                           "in docs/reports.md for what reports can compute", self._pos(node))

    def type_error(self, node: ast.AST, message: str) -> CalcProblem:
        return CalcProblem("expression_type", message, self._pos(node))

    def want(self, node: ast.AST, t: Typed, *classes: str, what: str) -> Typed:
        if t.cls in (*classes, NULL, ANY):
            return t
        raise self.type_error(node, f"{what} needs {' or '.join(classes)}, not {t.cls}")

    def unify(self, node: ast.AST, items: list[Typed], what: str) -> tuple[list[Expr], Typed]:
        """Values of one class (numbers brought to one scale) and a template result."""
        classes = {t.cls for t in items} - {NULL, ANY}
        if len(classes) > 1:
            raise self.type_error(node, f"{what} mixes {' and '.join(sorted(classes))}")
        cls = classes.pop() if classes else (ANY if any(t.cls == ANY for t in items) else NULL)
        scale = max((t.scale for t in items), default=0) if cls == NUMBER else 0
        exprs = [rescale(t, scale) if cls == NUMBER else t.expr for t in items]
        return exprs, Typed(sa.null(), cls, scale)

    def local_date(self, t: Typed) -> Expr:
        return DateBucket(t.expr, "day", self.timezone) if t.cls == DATETIME else t.expr

    # ---- nodes
    def node(self, n: ast.expr) -> Typed:
        handler = getattr(self, "n_" + type(n).__name__, None)
        if handler is None:
            raise self.refuse(n, f"{type(n).__name__} is not available in reports")
        result: Typed = handler(n)
        return result

    def n_Constant(self, n: ast.Constant) -> Typed:
        v = n.value
        if v is None:
            return Typed(sa.null(), NULL)
        if isinstance(v, bool):
            return Typed(sa.literal(v, sa.Boolean()), BOOLEAN)
        if isinstance(v, int | Decimal):
            return _literal_number(v, self._pos(n))
        if isinstance(v, str):
            return Typed(sa.literal(v, sa.Text()), TEXT)
        if isinstance(v, datetime):
            return Typed(sa.literal(v, UTCDateTime()), DATETIME)
        if isinstance(v, date):
            return Typed(sa.literal(v, sa.Date()), DATE)
        raise self.refuse(n, "lists are only allowed after in / not in")

    def n_Name(self, n: ast.Name) -> Typed:
        raise self.refuse(n, f"{n.id} is a whole record; name one of its fields: "
                          f"{n.id}.<field>")

    def n_Attribute(self, n: ast.Attribute) -> Typed:
        parts: list[str] = []
        cur: ast.expr = n
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not (isinstance(cur, ast.Name) and cur.id == "record"):
            raise self.refuse(n, "only fields of the record can be read (record.<field>)")
        return self.field(".".join(reversed(parts)), self._pos(n))

    def n_BinOp(self, n: ast.BinOp) -> Typed:
        a, b = self.node(n.left), self.node(n.right)
        if isinstance(n.op, ast.Add) and TEXT in (a.cls, b.cls):
            self.want(n.left, a, TEXT, what="+ on texts")
            self.want(n.right, b, TEXT, what="+ on texts")
            return Typed(a.expr.concat(b.expr), TEXT)
        if not isinstance(n.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            raise self.refuse(n, f"the operator {type(n.op).__name__} is not available in "
                              "reports (use + - * /)")
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(n.op)]
        self.want(n.left, a, NUMBER, what=symbol)
        self.want(n.right, b, NUMBER, what=symbol)
        if isinstance(n.op, ast.Add | ast.Sub):
            scale = max(a.scale, b.scale)
            x, y = rescale(a, scale), rescale(b, scale)
            return Typed(x + y if isinstance(n.op, ast.Add) else x - y, NUMBER, scale)
        if isinstance(n.op, ast.Mult):
            product = Typed((a.expr * b.expr).self_group(), NUMBER, a.scale + b.scale)
            if product.scale > MAX_SCALE:
                return Typed(RoundTo(product.expr, scale=product.scale, digits=MAX_SCALE),
                             NUMBER, MAX_SCALE)
            return product
        scale = min(MAX_SCALE, max(a.scale, b.scale, DIVISION_SCALE))
        return Typed(ExactDivide(a.expr, b.expr, a_scale=a.scale, b_scale=b.scale,
                                 scale=scale), NUMBER, scale)

    def n_UnaryOp(self, n: ast.UnaryOp) -> Typed:
        t = self.node(n.operand)
        if isinstance(n.op, ast.Not):
            self.want(n, t, BOOLEAN, what="not")
            return Typed(sa.not_(t.expr), BOOLEAN)
        if isinstance(n.op, ast.USub):
            self.want(n, t, NUMBER, what="unary -")
            return Typed(-t.expr, NUMBER, t.scale)
        raise self.refuse(n, f"{type(n.op).__name__} is not available in reports")

    def n_BoolOp(self, n: ast.BoolOp) -> Typed:
        what = "and" if isinstance(n.op, ast.And) else "or"
        values = [self.want(v, self.node(v), BOOLEAN, what=what).expr for v in n.values]
        return Typed(sa.and_(*values) if what == "and" else sa.or_(*values), BOOLEAN)

    def n_Compare(self, n: ast.Compare) -> Typed:
        parts: list[Expr] = []
        left_node = n.left
        left = self.node(n.left)
        for op, right_node in zip(n.ops, n.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                parts.append(self._membership(n, left, right_node, isinstance(op, ast.NotIn)))
                left_node = right_node
                continue
            right = self.node(right_node)
            if type(op) not in _COMPARE:
                raise self.refuse(n, f"{type(op).__name__} is not available in reports")
            symbol = _COMPARE[type(op)]
            if REFERENCE in (left.cls, right.cls) and not (
                    symbol in ("==", "!=") and NULL in (left.cls, right.cls)):
                raise self.type_error(n, "a relation, user or department field holds an id: "
                                      "compare it with none, or follow it to a field "
                                      "(record.account.name)")
            (x, y), _ = self.unify(n, [left, right], f"the comparison {symbol}")
            if symbol == "==":
                parts.append(x.is_not_distinct_from(y))
            elif symbol == "!=":
                parts.append(x.is_distinct_from(y))
            else:
                if BOOLEAN in (left.cls, right.cls):
                    raise self.type_error(n, f"{symbol} does not order true and false")
                parts.append({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[symbol])
            left, left_node = right, right_node
        del left_node
        return Typed(sa.and_(*parts) if len(parts) > 1 else parts[0], BOOLEAN)

    def _membership(self, n: ast.Compare, left: Typed, right: ast.expr, negate: bool) -> Expr:
        if isinstance(right, ast.List):
            if not all(isinstance(e, ast.Constant) for e in right.elts):
                raise self.refuse(right, "the list after in must hold literal values")
            items = [self.node(e) for e in right.elts]
        elif isinstance(right, ast.Constant) and isinstance(right.value, tuple):
            items = [self.node(ast.copy_location(ast.Constant(value=v), right))
                     for v in right.value]
        else:
            raise self.refuse(right, "in / not in need a list of values: x in [\"a\", \"b\"]")
        if not items:
            return sa.literal(negate, sa.Boolean())
        exprs, _ = self.unify(n, [left, *items], "in")
        member = sa.func.coalesce(exprs[0].in_(exprs[1:]), False)
        return sa.not_(member) if negate else member

    def n_IfExp(self, n: ast.IfExp) -> Typed:
        test = self.want(n.test, self.node(n.test), BOOLEAN, what="a condition")
        return self._choose(n, test.expr, self.node(n.body), self.node(n.orelse))

    def _choose(self, n: ast.AST, test: Expr, then: Typed, other: Typed) -> Typed:
        (a, b), template = self.unify(n, [then, other], "the two branches")
        return Typed(sa.case((test, a), else_=b), template.cls, template.scale)

    def n_Call(self, n: ast.Call) -> Typed:
        assert isinstance(n.func, ast.Name)  # the expression engine's checker made sure
        name = n.func.id
        if name not in SQL_FUNCTIONS:
            raise self.refuse(n, f"{name}() is not available in reports; functions there: "
                              f"{', '.join(SQL_FUNCTIONS)}")
        if name == "today":
            return Typed(sa.literal(self.today, sa.Date()), DATE)
        if name == "now":
            return Typed(sa.literal(self.now, UTCDateTime()), DATETIME)
        args = [self.node(a) for a in n.args]
        if name == "iif":
            test = self.want(n.args[0], args[0], BOOLEAN, what="iif's condition")
            return self._choose(n, test.expr, args[1], args[2])
        if name == "coalesce":
            exprs, template = self.unify(n, args, "coalesce")
            return Typed(sa.func.coalesce(*exprs), template.cls, template.scale)
        if name == "is_empty":
            t = args[0]
            cond: Expr = t.expr.is_(None)
            if t.cls == TEXT:
                cond = sa.or_(cond, sa.func.trim(t.expr) == sa.literal("", sa.Text()))
            return Typed(cond, BOOLEAN)
        if name in ("upper", "lower", "trim"):
            t = self.want(n, args[0], TEXT, what=f"{name}()")
            return Typed(sa.func.coalesce(getattr(sa.func, name)(t.expr),
                                          sa.literal("", sa.Text())), TEXT)
        if name == "concat":
            pieces: list[Expr] = []
            for node, t in zip(n.args, args, strict=True):
                if t.cls == NUMBER and t.scale:
                    raise self.type_error(node, "concat() joins texts, integers and dates; "
                                          "round a decimal to 0 places first")
                self.want(node, t, TEXT, NUMBER, DATE, what="concat()")
                value = t.expr if t.cls == TEXT else sa.cast(t.expr, sa.Text())
                pieces.append(sa.func.coalesce(value, sa.literal("", sa.Text())))
            out = pieces[0]
            for piece in pieces[1:]:
                out = out.concat(piece)
            return Typed(out, TEXT)
        if name == "abs":
            t = self.want(n, args[0], NUMBER, what="abs()")
            return Typed(sa.func.abs(t.expr), NUMBER, t.scale)
        if name == "round":
            t = self.want(n, args[0], NUMBER, what="round()")
            digits = 0
            if len(n.args) > 1:
                d = n.args[1]
                if not (isinstance(d, ast.Constant) and type(d.value) is int
                        and 0 <= d.value <= MAX_SCALE):
                    raise self.refuse(d, f"round() takes a constant 0 to {MAX_SCALE} places")
                digits = d.value
            if digits >= t.scale or t.cls != NUMBER:
                return t
            return Typed(RoundTo(t.expr, scale=t.scale, digits=digits), NUMBER, digits)
        if name in ("year", "month", "day", "weekday"):
            t = self.want(n, args[0], DATE, DATETIME, what=f"{name}()")
            return Typed(DatePart(self.local_date(t), name), NUMBER, 0)
        if name == "days_between":
            a = self.want(n.args[0], args[0], DATE, DATETIME, what="days_between()")
            b = self.want(n.args[1], args[1], DATE, DATETIME, what="days_between()")
            return Typed(DaysBetween(self.local_date(a), self.local_date(b)), NUMBER, 0)
        assert name == "to_date"
        t = self.want(n, args[0], DATE, DATETIME, what="to_date()")
        return Typed(self.local_date(t), DATE)
