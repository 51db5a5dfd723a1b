"""The one sandboxed expression language of Tangram.

Field defaults, formula fields, validation rules, visibility and required
conditions, flow conditions and assignee rules all use it. An expression is
compiled once per definition (parsed with :mod:`ast`, checked against a small
whitelist, constant parts evaluated) and then evaluated per record by a
:mod:`simpleeval` evaluator that walks the already-parsed tree.

>>> rule = compile_expression('record.amount > 500000 and record.stage in ["won", "lost"]')
>>> rule.evaluate({"record": {"amount": 800000, "stage": "won"}})
True
>>> sorted(rule.referenced_fields["record"])
['amount', 'stage']

The grammar, every function and every limit are documented for business
analysts in ``docs/expressions.md``; ``tests/expressions/cases.json`` pins the
semantics for the second (TypeScript) evaluator of the web UI.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import io
import json
import re
import threading
import tokenize
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DecimalException,
    Overflow,
)
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from simpleeval import EvalWithCompoundTypes

from tangram.clock import SYSTEM_CLOCK
from tangram.errors import DefinitionInvalid, ErrorItem
from tangram.metamodel.common import PaletteGroup

# ---------------------------------------------------------------------------
# Limits (documented in docs/expressions.md, "Limits")

MAX_SOURCE_LENGTH = 4_000  # characters of expression source
MAX_STRING_LITERAL = 1_000  # characters of one '...' literal
MAX_DEPTH = 100  # nesting of sub-expressions: keeps the recursive walkers off the stack limit
MAX_SIZE = 100_000  # characters of a text / items of a list produced by an expression
MAX_STEPS = 100_000  # nodes evaluated + items iterated by functions, per evaluation
MAX_INT_DIGITS = 1_000  # integers stay below 10**1000
MAX_EXPONENT = 10_000  # |b| in a ** b
MAX_REGEX_PATTERN = 200  # characters of a matches() pattern
MAX_REGEX_INPUT = 1_000  # characters of the text matches() searches
MAX_REGEX_SECONDS = 0.1  # time all matches() calls of one evaluation may search for
MAX_DATE_PATTERN = 64  # characters of a format_date() pattern

DEFAULT_VARIABLES: frozenset[str] = frozenset({"record", "old", "user"})
KINDS = ("syntax", "forbidden", "unknown_name", "type", "limit", "runtime")

_INT_LIMIT = 10**MAX_INT_DIGITS
_INT_LIMIT_BITS = _INT_LIMIT.bit_length()
# Every decimal operation goes through this context, never the thread's current
# one, so results do not depend on what other code did to decimal.getcontext().
_DEC = Context(prec=28, rounding=ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999)
_NUMBER_TYPES = frozenset({int, Decimal})  # bool is deliberately not a number
_ORDERED_TYPES = frozenset({int, Decimal, str, date, datetime})
_SCALAR_TYPES = frozenset({int, Decimal, str, bool, type(None), date, datetime})


# ---------------------------------------------------------------------------
# Errors


class ExpressionError(DefinitionInvalid):
    """An expression could not be compiled or evaluated.

    ``kind`` is one of :data:`KINDS`; ``position`` is the 0-based character
    offset in ``expression`` of the offending part (line breaks count as one
    character each), or ``None`` when it is not known.
    """

    code = "expression_invalid"
    _TITLES = {
        "syntax": "Syntax error", "forbidden": "Not allowed", "unknown_name": "Unknown name",
        "type": "Type error", "limit": "Limit exceeded", "runtime": "Evaluation error",
    }

    def __init__(self, reason: str, *, kind: str, expression: str = "",
                 position: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown expression error kind {kind!r}")
        self.reason = reason
        self.kind = kind
        self.expression = expression
        self.position = position
        super().__init__(self._compose())
        self._refresh()

    def locate(self, expression: str, position: int | None) -> ExpressionError:
        """Fill in where the error happened; the innermost caller (first to call) wins."""
        if not self.expression:
            self.expression = expression
        if self.position is None:
            self.position = position
        self._refresh()
        return self

    def as_error_item(self, path: str | None = None) -> ErrorItem:
        return ErrorItem(code=self.code, message=self.message, path=path,
                         details=dict(self.details))

    def _refresh(self) -> None:
        self.message = self._compose()
        self.args = (self.message,)
        self.details = {"kind": self.kind, "position": self.position, "expression": self.expression}

    def _compose(self) -> str:
        where = ""
        if self.expression:
            shown = self.expression if len(self.expression) <= 80 else self.expression[:77] + "..."
            where = f" in expression {shown!r}"
            if self.position is not None:
                near = self.expression[self.position:self.position + 20]
                where += f" at position {self.position}" + (f" (near {near!r})" if near else "")
        return f"{self._TITLES[self.kind]}{where}: {self.reason}"


def _type_error(reason: str) -> ExpressionError:
    return ExpressionError(reason, kind="type")


def _runtime_error(reason: str) -> ExpressionError:
    return ExpressionError(reason, kind="runtime")


def _limit_error(reason: str) -> ExpressionError:
    return ExpressionError(reason, kind="limit")


def _type_name(value: Any) -> str:
    """The word a business analyst sees for a value's type (same words as the docs)."""
    if value is None:
        return "none"
    names = {bool: "boolean", int: "integer", Decimal: "decimal", str: "text", datetime: "datetime",
             date: "date", list: "list", tuple: "list"}
    name = names.get(type(value))
    if name:
        return name
    return "object" if isinstance(value, Mapping) else type(value).__name__


def _a_type(value: Any) -> str:
    """The type's word with its article: "an integer", "a list", "none"."""
    name = _type_name(value)
    if name == "none":
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


# ---------------------------------------------------------------------------
# Evaluation context


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class EvalContext:
    """What an expression may know besides its variables: the clock and the time zone.

    ``now()`` returns ``now``; ``today()`` and every date function that turns a
    datetime into a calendar date use ``timezone``.
    """

    now: datetime = field(default_factory=SYSTEM_CLOCK.now)
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("EvalContext.now must be timezone-aware (UTC)")
        _zone(self.timezone)  # fail at construction, not in the middle of a rule

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)


class _NotConstant(Exception):  # noqa: N818 - control flow, never escapes this module
    """Raised while folding constants when a function asks for the clock or time zone."""


# ---------------------------------------------------------------------------
# Values and operators. Semantics are pinned by tests/expressions/cases.json.


def _read(value: Any) -> Any:
    """Normalize a value read from variables: binary floats become exact decimals
    (from their shortest repr, so 0.1 reads as 0.1), tuples become lists, and
    ids (a relation, user or department field; owner) their text — the
    language has no id type, so ``record.owner == user.id`` compares texts."""
    kind = type(value)
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise _runtime_error(f"the value {value!r} is not a finite number")
        return Decimal(repr(value))
    if kind is uuid.UUID:
        return str(value)
    if kind is tuple or (kind is list and value and type(value[0]) is uuid.UUID):
        return [str(v) if type(v) is uuid.UUID else v for v in value]
    return value


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES


def _check_int(value: int) -> int:
    if -_INT_LIMIT < value < _INT_LIMIT:
        return value
    raise _limit_error(f"integers are limited to {MAX_INT_DIGITS} digits")


def _check_size(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise _limit_error(f"a {what} of {size:,} would be longer than the limit of {MAX_SIZE:,}")


def _operand_error(symbol: str, left: Any, right: Any, allowed: str) -> ExpressionError:
    return _type_error(f"operator {symbol} cannot combine {_type_name(left)} and "
                       f"{_type_name(right)}; {allowed}")


def _op_add(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a + b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return _DEC.add(a, b)
    if (ta is str and tb is str) or (ta is list and tb is list):
        _check_size(len(a) + len(b), "text" if ta is str else "list")
        return a + b
    if a is None or b is None:
        return None
    raise _operand_error("+", a, b, "+ adds two numbers, or joins two texts or two lists")


def _op_sub(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a - b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return _DEC.subtract(a, b)
    if a is None or b is None:
        return None
    raise _operand_error("-", a, b, "- subtracts numbers (use days_between for dates)")


def _op_mul(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return _check_int(a * b)
    if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
        return _DEC.multiply(a, b)
    if a is None or b is None:
        return None
    for seq, count in ((a, b), (b, a)):
        if type(seq) in (str, list) and type(count) is int:
            count = min(max(count, 0), MAX_SIZE + 1)  # "" * 10**30 must not reach C's index size
            _check_size(len(seq) * count, "text" if type(seq) is str else "list")
            return seq * count
    raise _operand_error("*", a, b, "* multiplies numbers, or repeats a text or list an "
                         "integer number of times")


def _op_div(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        if b == 0:
            raise _runtime_error("division by zero; guard it, e.g. iif(b == 0, 0, a / b)")
        return _DEC.divide(a, b)  # int / int is a decimal too: 7 / 2 == 3.5
    if a is None or b is None:
        return None
    raise _operand_error("/", a, b, "/ divides numbers")


def _op_mod(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        if b == 0:
            raise _runtime_error("modulo by zero")
        if type(a) is int and type(b) is int:
            return a % b
        # Decimal % takes the sign of the dividend; the language (like int %) uses
        # the sign of the divisor, so -7 % 3 == 2 whatever the number types.
        rest = _DEC.remainder(a, b)
        if rest and (rest < 0) != (b < 0):
            rest = _DEC.add(rest, b)
        return rest
    if a is None or b is None:
        return None
    raise _operand_error("%", a, b, "% is the remainder of two numbers")


def _op_pow(a: Any, b: Any) -> Any:
    if not (_is_number(a) and _is_number(b)):
        if a is None or b is None:
            return None
        raise _operand_error("**", a, b, "** raises a number to a number")
    if abs(b) > MAX_EXPONENT:
        raise _limit_error(f"exponent {b} is larger than the limit of {MAX_EXPONENT}")
    if a == 0 and b < 0:
        raise _runtime_error("zero cannot be raised to a negative power (division by zero)")
    if a < 0 and b != int(b):
        raise _runtime_error(f"{format_value(a)} ** {format_value(b)} is not a real number "
                             "(a negative number to a fractional power)")
    if type(a) is int and type(b) is int and b >= 0:
        # (bit_length - 1) * b is a lower bound of the result's size: refuse before computing.
        if (abs(a).bit_length() - 1) * b > _INT_LIMIT_BITS:
            raise _limit_error(f"{a} ** {b} has more than {MAX_INT_DIGITS} digits")
        return _check_int(a**b)
    return _DEC.power(a, b)


def _op_neg(a: Any) -> Any:
    if type(a) is int:
        return -a
    if type(a) is Decimal:
        return _DEC.minus(a)
    if a is None:
        return None
    raise _type_error(f"unary - needs a number, got {_type_name(a)}")


def _op_not(a: Any) -> bool:
    return not a


def _op_eq(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is tb or (ta in _NUMBER_TYPES and tb in _NUMBER_TYPES):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return bool(a == b)
    if ta is float or tb is float:  # list items from data are not normalized on read
        return _op_eq(_read(a), _read(b))
    return False  # different kinds are never equal: true != 1, "1" != 1, a date != a datetime


def _op_ne(a: Any, b: Any) -> bool:
    return not _op_eq(a, b)


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _check_ordered(symbol: str, a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if (ta is tb and ta in _ORDERED_TYPES) or (ta in _NUMBER_TYPES and tb in _NUMBER_TYPES):
        return
    hint = ""
    if {ta, tb} == {date, datetime}:
        hint = " (compare dates with today(), datetimes with now(), or convert with to_date)"
    raise _type_error(f"{symbol} cannot compare {_type_name(a)} with {_type_name(b)}; it "
                      f"compares two numbers, two texts, two dates or two datetimes{hint}")


def _make_order(symbol: str, compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def order(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False  # a missing value is neither smaller nor larger (like SQL NULL)
        _check_ordered(symbol, a, b)
        if type(a) is datetime:
            return compare(_as_aware(a), _as_aware(b))  # naive datetimes are read as UTC
        return compare(a, b)

    return order


_op_lt = _make_order("<", lambda a, b: a < b)
_op_le = _make_order("<=", lambda a, b: a <= b)
_op_gt = _make_order(">", lambda a, b: a > b)
_op_ge = _make_order(">=", lambda a, b: a >= b)


def _contains(container: Any, item: Any, what: str = "in") -> bool:
    kind = type(container)
    if kind is list or kind is tuple:  # tuples only come from folded [..] literals
        if type(item) is str or item is None:
            return item in container  # fast path: no cross-type equality for text
        return any(_op_eq(item, element) for element in container)
    if kind is str:
        if type(item) is str:
            return item in container
        if item is None:
            return False
        raise _type_error(f"{what} on a text looks for a text, got {_type_name(item)}")
    if container is None:
        return False
    if isinstance(container, Mapping):
        return item in container if type(item) is str else False
    raise _type_error(f"{what} needs a list, a text or an object on its right, "
                      f"got {_type_name(container)}")


def _op_in(a: Any, b: Any) -> bool:
    return _contains(b, a)


def _op_not_in(a: Any, b: Any) -> bool:
    return not _contains(b, a, "not in")


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: _op_add, ast.Sub: _op_sub, ast.Mult: _op_mul, ast.Div: _op_div, ast.Mod: _op_mod,
    ast.Pow: _op_pow, ast.USub: _op_neg, ast.Not: _op_not, ast.Eq: _op_eq, ast.NotEq: _op_ne,
    ast.Lt: _op_lt, ast.LtE: _op_le, ast.Gt: _op_gt, ast.GtE: _op_ge, ast.In: _op_in,
    ast.NotIn: _op_not_in,
}


def _member(obj: Any, key: Any) -> Any:
    """``obj.key`` / ``obj[key]``: a missing field reads as none (records have optional fields)."""
    if type(obj) is dict or isinstance(obj, Mapping):
        try:
            return _read(obj.get(key))
        except TypeError:
            raise _type_error(f"{_a_type(key)} cannot be a field name") from None
    if obj is None:
        return None  # none.field is none, so record.account.name works on an empty account
    if type(obj) in (list, str):
        if type(key) is not int:
            raise _type_error(f"positions in {_a_type(obj)} are integers, "
                              f"got {_type_name(key)}")
        try:
            return _read(obj[key])
        except IndexError:
            return None
    raise _type_error(f"{_a_type(obj)} has no fields; only records and objects do")


# ---------------------------------------------------------------------------
# The evaluator: simpleeval over the pre-parsed, pre-checked tree


class _Evaluator(EvalWithCompoundTypes):  # type: ignore[misc]
    """One per thread, reused across evaluations (building one costs more than
    evaluating a typical rule); ``evaluate`` swaps in variables and context."""

    def __init__(self) -> None:
        super().__init__(operators=dict(_OPERATORS), functions={}, names={})
        # Only the node types the compiler lets through: if validation ever had a
        # hole, simpleeval's richer defaults (comprehensions, f-strings) stay unreachable.
        self.nodes = {
            ast.Constant: self._eval_constant, ast.Name: self._eval_name,
            ast.Attribute: self._eval_attribute, ast.Subscript: self._eval_subscript,
            ast.Call: self._eval_call, ast.BinOp: self._eval_binop,
            ast.UnaryOp: self._eval_unaryop, ast.BoolOp: self._eval_boolop,
            ast.Compare: self._eval_compare, ast.IfExp: self._eval_ifexp,
            ast.List: self._eval_list,
        }
        self.busy = False
        self.folding = False
        self.steps = 0
        self.regex_seconds = MAX_REGEX_SECONDS  # left for matches() in this evaluation
        self._context: EvalContext | None = None

    @property
    def context(self) -> EvalContext:
        if self.folding:
            raise _NotConstant
        if self._context is None:
            self._context = EvalContext()  # real time, only when a rule asks for it
        return self._context

    def charge(self, steps: int) -> None:
        """Count work done by a function (one step per list item it walks)."""
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise _limit_error(f"evaluation took more than {MAX_STEPS:,} steps")

    # simpleeval checks every intermediate result for forbidden callables and
    # modules; we skip that on the hot path because no callable can be reached:
    # calls resolve only registry names and member access only reads mappings.
    def _eval(self, node: ast.AST) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _limit_error(f"evaluation took more than {MAX_STEPS:,} steps")
        try:
            return self.nodes[type(node)](node)
        except ExpressionError as exc:
            if exc.position is None:
                exc.locate(self.expr, getattr(node, "col_offset", None))
            raise
        except RecursionError:
            raise _limit_error("the expression is nested too deeply").locate(
                self.expr, getattr(node, "col_offset", None)) from None
        except (Overflow, OverflowError):
            raise _limit_error("a number is too large for this operation").locate(
                self.expr, getattr(node, "col_offset", None)) from None
        except DecimalException:
            raise _runtime_error("a number is too large or too precise for this operation").locate(
                self.expr, getattr(node, "col_offset", None)) from None
        except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
            # A function met data it cannot handle: report it as the expression's
            # problem. Other exceptions (say, a database error raised by a lazy
            # record mapping) are not the analyst's and propagate unchanged.
            kind = "type" if isinstance(exc, TypeError) else "runtime"
            raise ExpressionError(f"{type(exc).__name__}: {exc}", kind=kind).locate(
                self.expr, getattr(node, "col_offset", None)) from None

    def _eval_constant(self, node: ast.Constant) -> Any:
        return node.value

    def _eval_name(self, node: ast.Name) -> Any:
        return _read(self.names.get(node.id))  # an absent variable (old on create) is none

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        return _member(self._eval(node.value), node.attr)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        return _member(self._eval(node.value), self._eval(node.slice))

    def _eval_list(self, node: ast.List) -> list[Any]:
        return [self._eval(element) for element in node.elts]

    def _eval_call(self, node: ast.Call) -> Any:
        spec = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]  # checked at compile
        if spec.lazy:
            thunks = [lambda arg=arg: self._eval(arg) for arg in node.args]
            return spec.implementation(self, *thunks)
        return spec.implementation(self, *[self._eval(arg) for arg in node.args])


_WHOLE = "*"  # marker in CompiledExpression._fields: the variable is used as a whole
_local = threading.local()
_NO_VARIABLES: Mapping[str, Any] = {}


def _acquire(variables: Mapping[str, Any], context: EvalContext | None,
             folding: bool = False) -> _Evaluator:
    evaluator: _Evaluator | None = getattr(_local, "evaluator", None)
    if evaluator is None:
        evaluator = _local.evaluator = _Evaluator()
    elif evaluator.busy:
        # Re-entrant use (e.g. a lazy record mapping that computes a formula
        # field while another expression reads it): use a private evaluator.
        evaluator = _Evaluator()
    evaluator.busy = True
    evaluator.folding = folding
    evaluator.steps = 0
    evaluator.regex_seconds = MAX_REGEX_SECONDS
    evaluator.names = variables
    evaluator._context = context
    return evaluator


def _release(evaluator: _Evaluator) -> None:
    evaluator.busy = False
    evaluator.names = _NO_VARIABLES  # do not keep records alive between evaluations
    evaluator._context = None


# ---------------------------------------------------------------------------
# Compiled expressions


class CompiledExpression:
    """A parsed, checked expression; immutable and safe to share between threads."""

    __slots__ = ("source", "_tree", "_fields")

    def __init__(self, source: str, tree: ast.expr, fields: dict[str, frozenset[str]]) -> None:
        self.source = source
        self._tree = tree
        self._fields = fields

    def evaluate(self, variables: Mapping[str, Any], *,
                 context: EvalContext | None = None) -> Any:
        """Evaluate against ``variables`` (plain dicts are fine: ``record.amount``
        reads the key, a missing key is none).

        >>> compile_expression("record.qty * 2.5").evaluate({"record": {"qty": 3}})
        Decimal('7.5')
        """
        evaluator = _acquire(variables, context)
        try:
            return evaluator.eval(self.source, previously_parsed=self._tree)
        except ExpressionError as exc:
            raise exc.locate(self.source, None) from None
        finally:
            _release(evaluator)

    @property
    def tree(self) -> ast.expr:
        """The checked, constant-folded syntax tree (shared: read it, never change it).
        The report engine translates it to SQL (``tangram.engines.reports.calculated``)."""
        return self._tree

    @property
    def referenced_fields(self) -> dict[str, set[str]]:
        """Field names read on each variable, e.g. ``{"record": {"amount"}, "old": {"stage"}}``.

        Every variable the expression mentions is a key, with an empty set when
        no field is named (``is_empty(old)``); see :attr:`whole_variables`.
        """
        return {name: set(names - {_WHOLE}) for name, names in self._fields.items()}

    @property
    def whole_variables(self) -> set[str]:
        """Variables used as a whole (passed to a function, or indexed with a
        computed key): the expression may depend on any of their fields."""
        return {name for name, names in self._fields.items() if _WHOLE in names}

    def __repr__(self) -> str:
        return f"CompiledExpression({self.source!r})"


def compile_expression(source: str, *,
                       allowed_names: Iterable[str] | None = None) -> CompiledExpression:
    """Parse and check ``source`` once; evaluate the result many times.

    ``allowed_names`` replaces the default variables ``record``, ``old`` and
    ``user`` (pass e.g. ``[*DEFAULT_VARIABLES, "row"]`` to extend them).
    Function names are always allowed in calls. Constant parts are evaluated
    now, so ``1 / 0`` or ``"a" * 10**9`` fail here rather than on every record.

    >>> compile_expression("record.amount * 0.9").evaluate({"record": {"amount": 100}})
    Decimal('90.0')
    >>> validate_expression("record.__class__")[0].details["kind"]
    'forbidden'
    """
    names = DEFAULT_VARIABLES if allowed_names is None else frozenset(allowed_names)
    if not isinstance(source, str):
        raise ExpressionError(f"an expression is text, got {_type_name(source)}", kind="syntax")
    return _compile(source, names)


def validate_expression(source: str, *, allowed_names: Iterable[str] | None = None,
                        path: str | None = None) -> list[ErrorItem]:
    """``[]`` when ``source`` compiles, else one :class:`ErrorItem` (located at ``path``)."""
    try:
        compile_expression(source, allowed_names=allowed_names)
    except ExpressionError as exc:
        return [exc.as_error_item(path)]
    return []


@lru_cache(maxsize=4096)
def _compile(source: str, names: frozenset[str]) -> CompiledExpression:
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"the expression has {len(source):,} characters; the limit is "
                              f"{MAX_SOURCE_LENGTH:,}", kind="limit", expression=source[:100])
    tree, literals = _parse(source)
    checker = _Checker(source, names, literals)
    checker.check_depth(tree)
    tree = checker.visit(tree)
    constant: dict[int, bool] = {}
    _mark_constants(tree, constant)
    tree = _fold(source, tree, constant)
    return CompiledExpression(source, tree, {k: frozenset(v) for k, v in checker.fields.items()})


def _parse(source: str) -> tuple[ast.expr, dict[int, str]]:
    """Parse ``source``; also return the exact source text of every literal (by node id)."""
    # Line breaks become spaces (one character each), so an expression may span
    # lines anywhere and every position is a plain offset into the source.
    flat = source.replace("\r", " ").replace("\n", " ")
    body = flat.lstrip()
    if not body.strip():
        raise ExpressionError("the expression is empty", kind="syntax", expression=source)
    lead = len(flat) - len(body)
    if "#" in body:
        _refuse_comments(source, body, lead)
    try:
        with warnings.catch_warnings():
            # "\d" in a literal warns in Python; here it is a documented escape rule.
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval").body
    except SyntaxError as exc:
        message = exc.msg
        if not exc.offset:  # Python gives no column when the text simply stops too early
            offset, message = len(source.rstrip()), f"{message}: the expression is incomplete"
        else:
            offset = lead + min(exc.offset - 1, len(body))
        raise ExpressionError(f"{message}; expressions are a small Python-like language, see "
                              "docs/expressions.md", kind="syntax", expression=source,
                              position=offset) from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError("the expression cannot be read (null character or nested too "
                              "deeply)", kind="syntax", expression=source) from None
    # Python joins "a" "b" and decodes escapes its own way; the checker re-reads
    # each literal from its source text with the language's rules.
    # One line (breaks became spaces), so a literal's text is its byte span;
    # ast.get_source_segment would split the whole source again for each one.
    encoded = body.encode()
    literals = {id(node): encoded[node.col_offset:node.end_col_offset].decode()
                for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    _shift_positions(tree, body, lead)
    return tree, literals


def _refuse_comments(source: str, body: str, lead: int) -> None:
    try:
        for token in tokenize.generate_tokens(io.StringIO(body).readline):
            if token.type == tokenize.COMMENT:
                raise ExpressionError("comments (#) are not supported", kind="syntax",
                                      expression=source, position=lead + token.start[1])
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse reports the real syntax error


def _shift_positions(tree: ast.AST, body: str, lead: int) -> None:
    """Turn ast's UTF-8 byte columns into character offsets of the original source."""
    ascii_only = body.isascii()
    encoded = body.encode()
    for node in ast.walk(tree):
        if isinstance(node, ast.expr):
            col = node.col_offset
            if not ascii_only:
                col = len(encoded[:col].decode(errors="ignore"))
            node.col_offset = col + lead
            node.end_col_offset = None  # byte-based; nothing uses it after this point


_STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", re.DOTALL)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
_INT_LITERAL = re.compile(r"[0-9]+")
_DECIMAL_LITERAL = re.compile(r"[0-9]+\.[0-9]+")
_LITERAL_NAMES = {"true": True, "false": False, "none": None}
_ALLOWED_SUMMARY = ("Allowed: literals, variables and their fields, and/or/not, comparisons, "
                    "in / not in, + - * / % **, a if c else b, [lists] and function calls.")
_FORBIDDEN_NODES = {
    "Lambda": "lambda functions are not allowed",
    "ListComp": "comprehensions (for ... in ...) are not allowed; use sum_of, count_if and "
                "the other functions over sub-table rows",
    "NamedExpr": "assignment (:=) is not allowed",
    "Dict": "{...} literals are not allowed; use a list [a, b]",
    "Set": "{...} literals are not allowed; use a list [a, b]",
    "Tuple": "tuples (a, b) are not allowed; use a list [a, b]",
    "JoinedStr": "f-strings are not allowed; use concat(...)",
    "Starred": "* unpacking is not allowed",
    "Slice": "slices [a:b] are not allowed; use left, right or substr",
}
for _comprehension in ("SetComp", "DictComp", "GeneratorExp"):
    _FORBIDDEN_NODES[_comprehension] = _FORBIDDEN_NODES["ListComp"]
_FORBIDDEN_OPERATORS = {
    ast.FloorDiv: "// is not supported; use floor(a / b)",
    ast.MatMult: "@ is not supported",
    ast.BitAnd: "& is not supported; use and", ast.BitOr: "| is not supported; use or",
    ast.BitXor: "^ is not supported; use ** for powers",
    ast.LShift: "<< is not supported", ast.RShift: ">> is not supported",
    ast.Invert: "~ is not supported", ast.UAdd: "unary + is not supported",
    ast.Is: "is is not supported; use == none", ast.IsNot: "is not is not supported; use != none",
}


class _Checker:
    """Walk the parsed tree once: refuse anything outside the grammar, decode
    literals the language's way, and record which fields each variable reads."""

    def __init__(self, source: str, names: frozenset[str], literals: dict[int, str]) -> None:
        self.source = source
        self.names = names
        self.literals = literals
        self.fields: dict[str, set[str]] = {}

    def fail(self, node: ast.AST, kind: str, reason: str) -> ExpressionError:
        return ExpressionError(reason, kind=kind, expression=self.source,
                               position=getattr(node, "col_offset", None))

    def check_depth(self, tree: ast.expr) -> None:
        # Iterative, because the recursive checker below must never meet a tree
        # deep enough to exhaust Python's stack.
        stack: list[tuple[ast.AST, int, ast.AST | None]] = [(tree, 1, None)]
        while stack:
            node, depth, parent = stack.pop()
            if depth > MAX_DEPTH:
                chain = isinstance(parent, ast.BinOp) and isinstance(parent.left, ast.BinOp)
                raise self.fail(node, "limit", (
                    f"more than {MAX_DEPTH} operators in a row (each one nests the terms "
                    "before it); add many terms with sum([a, b, …]) or join texts with "
                    "concat(a, b, …)") if chain else (
                    f"the expression is nested more than {MAX_DEPTH} levels deep; split it "
                    "into several fields"))
            step = 1 if isinstance(node, ast.expr) else 0
            stack.extend((child, depth + step, node) for child in ast.iter_child_nodes(node))

    def visit(self, node: ast.expr) -> ast.expr:
        handler = getattr(self, "visit_" + type(node).__name__, None)
        if handler is None:
            reason = _FORBIDDEN_NODES.get(type(node).__name__,
                                          f"{type(node).__name__} is not part of the language")
            raise self.fail(node, "forbidden", f"{reason}. {_ALLOWED_SUMMARY}")
        result: ast.expr = handler(node)
        return result

    def check_operator(self, node: ast.expr, op: ast.AST) -> None:
        if type(op) not in _OPERATORS:
            reason = _FORBIDDEN_OPERATORS.get(type(op), f"{type(op).__name__} is not supported")
            raise self.fail(node, "forbidden", f"{reason}. {_ALLOWED_SUMMARY}")

    def visit_Constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        text = self.literals.get(id(node), "")
        if value is None or type(value) is bool:
            return node
        if type(value) is str:
            return ast.copy_location(ast.Constant(value=self._decode_string(node, text)), node)
        if type(value) is int and _INT_LITERAL.fullmatch(text):
            if value >= _INT_LIMIT:
                raise self.fail(node, "limit", f"the integer {text[:20]}… has {len(text):,} "
                                f"digits; integers are limited to {MAX_INT_DIGITS:,} digits")
            return node
        if type(value) is float and _DECIMAL_LITERAL.fullmatch(text):
            # Decimal literals are exact: 0.1 is one tenth, never a binary float.
            return ast.copy_location(ast.Constant(value=Decimal(text)), node)  # type: ignore[arg-type]
        if type(value) in (int, float, complex):
            raise self.fail(node, "syntax", f"the number {text} is not supported; write digits "
                            "with an optional decimal point, like 16 or 1.5")
        raise self.fail(node, "syntax", f"the literal {text} is not supported. {_ALLOWED_SUMMARY}")

    def _decode_string(self, node: ast.Constant, text: str) -> str:
        if not _STRING_LITERAL.fullmatch(text):
            raise self.fail(node, "syntax", "write one text in '...' or \"...\" quotes: prefixes "
                            "(r, b, f, u), triple quotes and adjacent texts are not supported; "
                            "join texts with + or concat()")
        def unescape(match: re.Match[str]) -> str:
            code = match.group(1)
            if len(code) == 5:
                return chr(int(code[1:], 16))
            if code in ("x", "N", "U"):
                raise self.fail(node, "syntax",
                                "escapes \\x, \\N and \\U are not supported; use \\uXXXX")
            # Unknown escapes keep their backslash, so "\d{11}" is the regex \d{11}.
            return _SIMPLE_ESCAPES.get(code, "\\" + code)

        value = _ESCAPE.sub(unescape, text[1:-1])
        if len(value) > MAX_STRING_LITERAL:
            raise self.fail(node, "limit", f"a text literal has {len(value):,} characters; the "
                            f"limit is {MAX_STRING_LITERAL:,}")
        return value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in _LITERAL_NAMES:
            return ast.copy_location(ast.Constant(value=_LITERAL_NAMES[node.id]), node)
        if node.id.startswith("_"):
            raise self.fail(node, "forbidden", f"names starting with _ are not allowed ({node.id})")
        if node.id in self.names:
            self.fields.setdefault(node.id, set()).add(_WHOLE)
            return node
        if node.id in FUNCTIONS:
            raise self.fail(node, "syntax", f"{node.id} is a function; call it: "
                            f"{FUNCTIONS[node.id].signature}")
        raise self.fail(node, "unknown_name", f"unknown name {node.id!r}"
                        f"{_suggest(node.id, self.names)}; variables here: "
                        f"{', '.join(sorted(self.names)) or '(none)'}")

    def _root_field(self, base: ast.expr, key: str) -> bool:
        if isinstance(base, ast.Name) and base.id in self.names:
            self.fields.setdefault(base.id, set()).add(key)
            return True
        return False

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        if node.attr.startswith("_"):
            raise self.fail(node, "forbidden",
                            f"fields starting with _ cannot be read (.{node.attr})")
        if not self._root_field(node.value, node.attr):
            node.value = self.visit(node.value)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        node.slice = self.visit(node.slice)
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if isinstance(key, str) and key.startswith("_"):
            raise self.fail(node.slice, "forbidden",
                            f"fields starting with _ cannot be read ({key!r})")
        if not (isinstance(key, str) and self._root_field(node.value, key)):
            node.value = self.visit(node.value)
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, "forbidden", "only functions from the function list can be "
                            "called; methods like x.upper() are not available, use upper(x)")
        name = node.func.id
        if name.startswith("_"):
            raise self.fail(node, "forbidden", f"names starting with _ are not allowed ({name})")
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.fail(node, "unknown_name", f"unknown function {name!r}"
                            f"{_suggest(name, FUNCTIONS)}; see the function list in "
                            "docs/expressions.md")
        if node.keywords:
            raise self.fail(node, "forbidden", f"named arguments are not supported; "
                            f"write {spec.signature}")
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            raise self.fail(node, "syntax", f"{name}() got {count} argument(s); write "
                            f"{spec.signature}")
        node.args = [self.visit(arg) for arg in node.args]
        if spec.check_arguments is not None:
            try:
                spec.check_arguments([a.value if isinstance(a, ast.Constant) else None
                                      for a in node.args])
            except ExpressionError as exc:
                raise exc.locate(self.source, node.col_offset) from None
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.check_operator(node, node.op)
        node.left, node.right = self.visit(node.left), self.visit(node.right)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.check_operator(node, node.op)
        node.operand = self.visit(node.operand)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        node.values = [self.visit(value) for value in node.values]
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        for op in node.ops:
            self.check_operator(node, op)
        node.left = self.visit(node.left)
        node.comparators = [self.visit(c) for c in node.comparators]
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        node.test, node.body = self.visit(node.test), self.visit(node.body)
        node.orelse = self.visit(node.orelse)
        return node

    def visit_List(self, node: ast.List) -> ast.expr:
        node.elts = [self.visit(element) for element in node.elts]
        return node


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_FOLDABLE = (ast.Constant, ast.List, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
             ast.Subscript, ast.Call, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
             ast.expr_context)


def _mark_constants(node: ast.AST, constant: dict[int, bool]) -> bool:
    result = isinstance(node, _FOLDABLE)
    children: Iterable[ast.AST] = ast.iter_child_nodes(node)
    if isinstance(node, ast.Call):
        # A call is constant when its arguments are: the function's name is not
        # a variable (calls that need the clock refuse to fold, see _NotConstant).
        constant[id(node.func)] = False
        children = node.args
    for child in children:
        result = _mark_constants(child, constant) and result
    constant[id(node)] = result
    return result


def _fold(source: str, node: ast.expr, constant: dict[int, bool], eager: bool = True) -> ast.expr:
    """Evaluate constant sub-expressions once, top-down (largest first).

    Per-record work shrinks, and a constant part that must fail (``"a" * 10**9``
    where it is always reached) is reported when the definition is saved. A part
    that only may run (a branch of iif, the right side of and/or) keeps its
    error for evaluation, so folding never changes what an expression means.
    Calls that need the clock or time zone raise _NotConstant and stay as they are.
    """
    if constant[id(node)] and not isinstance(node, ast.Constant):
        try:
            value = _evaluate_constant(source, node)
        except _NotConstant:
            pass
        except ExpressionError:
            if eager:
                raise
            return node
        else:
            if type(value) in _SCALAR_TYPES:
                return ast.copy_location(ast.Constant(value=value), node)
            return node  # a list stays a literal: one shared list must not leak between records
    for name, old in ast.iter_fields(node):
        if isinstance(old, ast.expr):
            lazy = isinstance(node, ast.IfExp) and name != "test"
            setattr(node, name, _fold(source, old, constant, eager and not lazy))
        elif isinstance(old, list):
            setattr(node, name, [
                _fold(source, v, constant, eager and not _lazy_position(node, i))
                if isinstance(v, ast.expr) else v for i, v in enumerate(old)])
    if (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and isinstance(node.comparators[0], ast.List) and constant[id(node.comparators[0])]):
        # x in ["won", "lost"]: build the list once; a tuple cannot be mutated by anyone.
        try:
            items = _evaluate_constant(source, node.comparators[0])
        except (_NotConstant, ExpressionError):
            return node
        literal = ast.Constant(value=tuple(items))  # type: ignore[arg-type]
        node.comparators[0] = ast.copy_location(literal, node.comparators[0])
    return node


def _lazy_position(node: ast.expr, index: int) -> bool:
    """Whether the index-th child in a list field may be skipped at run time."""
    if isinstance(node, ast.BoolOp | ast.Compare):  # a < b < c skips c when a < b is false
        return index > 0
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        spec = FUNCTIONS.get(node.func.id)
        return spec is not None and spec.lazy and index > 0
    return False


def _evaluate_constant(source: str, node: ast.expr) -> Any:
    evaluator = _acquire(_NO_VARIABLES, None, folding=True)
    try:
        return evaluator.eval(source, previously_parsed=node)
    except ExpressionError as exc:
        raise exc.locate(source, node.col_offset) from None
    finally:
        _release(evaluator)


# ---------------------------------------------------------------------------
# Function registry: one entry per function, read by the compiler, the
# evaluator, function_catalog() (API metadata) and docs/expressions.md.


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    signature: str
    category: str
    description: dict[str, str]  # {"zh": …, "en": …}, like a label
    examples: tuple[tuple[str, str], ...]  # (expression, result as format_value shows it)
    implementation: Callable[..., Any]  # called with the evaluator first, then the arguments
    min_args: int
    max_args: int | None
    lazy: bool = False  # arguments arrive as zero-argument callables (only chosen ones run)
    check_arguments: Callable[[list[Any]], None] | None = None  # compile-time check of constants


# The groups of functions in the designer's palette and in docs/expressions.md.
FunctionCategory = PaletteGroup


FUNCTIONS: dict[str, FunctionSpec] = {}
FUNCTION_CATEGORIES: dict[str, FunctionCategory] = {c.key: c for c in (
    FunctionCategory("logic", {"zh": "条件", "en": "Conditions"},
                     {"zh": "按条件取值，处理空值。",
                      "en": "Pick a value by a condition; handle empty values."}),
    FunctionCategory("text", {"zh": "文本", "en": "Text"},
                     {"zh": "文本的长度、大小写、截取、查找、替换与连接。",
                      "en": "Length, case, parts, search, replacement and joining of texts."}),
    FunctionCategory("math", {"zh": "数字", "en": "Numbers"},
                     {"zh": "取整、四舍五入、最大最小值、求和与平均，以及数字与文本的互相转换。",
                      "en": "Rounding, minimum and maximum, sums and averages, and turning "
                            "numbers into text and back."}),
    FunctionCategory("date", {"zh": "日期时间", "en": "Dates and times"},
                     {"zh": "今天与当前时间，日期的加减、间隔、年月日与格式化。",
                      "en": "Today and now; adding to dates, the time between two, their "
                            "parts and formatting."}),
    FunctionCategory("aggregate", {"zh": "子表汇总", "en": "Sub-table rows"},
                     {"zh": "对子表各行计数、求和、求平均、取最小或最大值。",
                      "en": "Count, sum, average, minimum and maximum over a sub-table's "
                            "rows."}),
)}
CATEGORIES = tuple(FUNCTION_CATEGORIES)  # in the palette's order


def _function(signature: str, category: str, en: str, zh: str, *examples: tuple[str, str],
              lazy: bool = False, check_arguments: Callable[[list[Any]], None] | None = None,
              ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(implementation: Callable[..., Any]) -> Callable[..., Any]:
        name = signature.split("(", 1)[0]
        if category not in FUNCTION_CATEGORIES:  # it would have no title in the palette
            raise ValueError(f"function {name}: unknown category {category!r}; categories: "
                             f"{', '.join(FUNCTION_CATEGORIES)}")
        params = list(inspect.signature(implementation).parameters.values())[1:]
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        FUNCTIONS[name] = FunctionSpec(
            name=name, signature=signature, category=category,
            description={"zh": zh, "en": en}, examples=examples, implementation=implementation,
            min_args=sum(1 for p in positional if p.default is p.empty)
            + (1 if variadic and not positional else 0),
            max_args=None if variadic else len(positional), lazy=lazy,
            check_arguments=check_arguments)
        return implementation

    return register


def function_catalog() -> list[dict[str, Any]]:
    """Every function, by category, for the API metadata endpoint and the docs."""
    return [
        {"name": s.name, "signature": s.signature, "category": s.category,
         "description": s.description,
         "examples": [{"expression": e, "result": r} for e, r in s.examples],
         "min_args": s.min_args, "max_args": s.max_args}
        for category in CATEGORIES for s in FUNCTIONS.values() if s.category == category
    ]


def function_categories() -> list[dict[str, Any]]:
    """The categories of :func:`function_catalog`, in its order, with their titles.

    >>> function_categories()[0]["label"]
    {'zh': '条件', 'en': 'Conditions'}
    """
    return [c.describe() for c in FUNCTION_CATEGORIES.values()]


# The clock and variables the catalog's examples assume (the docs say so, the tests check it).
EXAMPLE_CONTEXT = EvalContext(now=datetime(2026, 1, 31, 8, 0, tzinfo=UTC), timezone="Asia/Shanghai")
EXAMPLE_VARIABLES: dict[str, Any] = {
    "record": {"lines": [{"qty": 2, "gift": False}, {"qty": 3, "gift": True}]},
}


def _to_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is Decimal:
        # Plain notation keeps the decimal places (1.50 stays "1.50"); extreme
        # exponents keep scientific notation so the text stays small.
        return format(value, "f") if abs(value.adjusted()) <= MAX_INT_DIGITS else str(value)
    if kind is datetime:
        return _as_aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
    if kind is date:
        return value.isoformat()  # type: ignore[no-any-return]
    raise _type_error(f"{_a_type(value)} cannot be turned into text")


def format_value(value: Any) -> str:
    """A value written the way the docs and examples write it."""
    if value is None:
        return "none"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return json.dumps(value, ensure_ascii=False)
    if type(value) in (int, Decimal, date, datetime):
        return _to_text(value)
    if type(value) in (list, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {format_value(v)}"
                               for k, v in value.items()) + "}"
    return repr(value)


# The functions themselves live in their own module (for size); importing it
# registers every one of them in FUNCTIONS.
from tangram.engines import expression_functions as _library  # noqa: E402,F401
