"""The function library of the expression language: one ``@_function`` entry
per function (signature, zh/en description, examples, implementation),
registered in :data:`tangram.engines.expressions.FUNCTIONS`.

A module of its own only for size; :mod:`tangram.engines.expressions`
imports it, so importing either gives the complete language.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, cast

import regex

from tangram.engines.expressions import (  # noqa: F401 - shared internals of the language
    _DEC,
    _INT_LIMIT,
    _NUMBER_TYPES,
    MAX_DATE_PATTERN,
    MAX_INT_DIGITS,
    MAX_REGEX_INPUT,
    MAX_REGEX_PATTERN,
    MAX_REGEX_SECONDS,
    EvalContext,
    ExpressionError,
    _as_aware,
    _check_ordered,
    _check_size,
    _contains,
    _Evaluator,
    _function,
    _limit_error,
    _op_add,
    _op_eq,
    _read,
    _runtime_error,
    _to_text,
    _type_error,
    _type_name,
)

# --- argument helpers --------------------------------------------------------

def _arg_error(fn: str, expected: str, value: Any) -> ExpressionError:
    return _type_error(f"{fn}() expects {expected}, got {_type_name(value)}")


def _text_arg(fn: str, value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _arg_error(fn, "a text", value)


def _int_arg(fn: str, value: Any, what: str = "an integer") -> int:
    if type(value) is int:
        return value
    if type(value) is Decimal and value == value.to_integral_value():
        return _decimal_to_int(value)
    raise _arg_error(fn, what, value)


def _number_arg(fn: str, value: Any) -> int | Decimal | None:
    value = _read(value)
    if value is None or type(value) in _NUMBER_TYPES:
        return value  # type: ignore[no-any-return]
    raise _arg_error(fn, "a number", value)


def _list_arg(env: _Evaluator, fn: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if type(value) in (list, tuple):
        env.charge(len(value))
        return list(value)
    raise _arg_error(fn, "a list", value)


def _field_values(env: _Evaluator, fn: str, rows: Any, field_name: Any) -> list[Any]:
    """Values of ``field_name`` in each sub-table row; none values are dropped."""
    if type(field_name) is not str:
        raise _arg_error(fn, "a field name in quotes as second argument", field_name)
    values = []
    for row in _list_arg(env, fn, rows):
        if not isinstance(row, Mapping):
            raise _arg_error(fn, "a list of rows (objects)", row)
        value = _read(row.get(field_name))
        if value is not None:
            values.append(value)
    return values


def _decimal_to_int(value: Decimal) -> int:
    if abs(value) >= _INT_LIMIT:
        raise _limit_error(f"integers are limited to {MAX_INT_DIGITS} digits")
    return int(value)


def _numbers(fn: str, values: Iterable[Any]) -> list[int | Decimal]:
    out: list[int | Decimal] = []
    for value in values:
        value = _number_arg(fn, value)
        if value is not None:
            out.append(value)
    return out


def _total(values: list[int | Decimal]) -> int | Decimal:
    total: int | Decimal = 0
    for value in values:
        total = _op_add(total, value)
    return total


def _average(values: list[int | Decimal]) -> Decimal | None:
    return _DEC.divide(_total(values), len(values)) if values else None


def _extreme(fn: str, values: list[Any], pick_larger: bool) -> Any:
    best = None
    for value in values:
        value = _read(value)
        if value is None:
            continue
        if best is None:
            _check_ordered(f"{fn}()", value, value)
            best = value
            continue
        _check_ordered(f"{fn}()", value, best)
        if (value > best) if pick_larger else (value < best):
            best = value
    return best


# --- logic --------------------------------------------------------------------

@_function("iif(condition, then, else)", "logic",
           "then when condition is true, else otherwise; only the chosen branch is evaluated. "
           "(if is a reserved word, hence iif.)",
           "条件为真时返回 then，否则返回 else；只计算被选中的一支（if 是保留字，故名 iif）。",
           ('iif(5 > 3, "yes", "no")', '"yes"'), ("iif(none, 1, 2)", "2"), lazy=True)
def _iif(env: _Evaluator, condition: Callable[[], Any], then: Callable[[], Any],
         otherwise: Callable[[], Any]) -> Any:
    return then() if condition() else otherwise()


@_function("coalesce(value, ...)", "logic",
           "The first argument that is not none (later ones are not evaluated).",
           "返回第一个不为 none 的参数（其后的参数不再计算）。",
           ('coalesce(none, "", "x")', '""'), ("coalesce(none, 0)", "0"), lazy=True)
def _coalesce(env: _Evaluator, *values: Callable[[], Any]) -> Any:
    for thunk in values:
        value = thunk()
        if value is not None:
            return value
    return None


@_function("is_empty(value)", "logic",
           "True for none, a text of only spaces, an empty list or an empty object.",
           "值为 none、只含空白的文本、空列表或空对象时为 true。",
           ('is_empty("  ")', "true"), ("is_empty([0])", "false"))
def _is_empty(env: _Evaluator, value: Any) -> bool:
    if value is None:
        return True
    if type(value) is str:
        return not value.strip()
    if type(value) in (list, tuple) or isinstance(value, Mapping):
        return len(value) == 0
    return False


# --- text ---------------------------------------------------------------------

@_function("len(value)", "text", "Number of characters of a text or items of a list; none is 0.",
           "文本的字符数或列表的元素数；none 为 0。", ('len("合同")', "2"), ("len([1, 2, 3])", "3"))
def _len(env: _Evaluator, value: Any) -> int:
    if value is None:
        return 0
    if type(value) in (str, list, tuple):
        return len(value)
    raise _arg_error("len", "a text or a list", value)


@_function("upper(text)", "text", "The text in capitals; none gives \"\".",
           "转为大写；none 得 \"\"。",
           ('upper("abc")', '"ABC"'))
def _upper(env: _Evaluator, text: Any) -> str:
    return _text_arg("upper", text).upper()


@_function("lower(text)", "text", "The text in small letters; none gives \"\".",
           "转为小写；none 得 \"\"。", ('lower("ABC")', '"abc"'))
def _lower(env: _Evaluator, text: Any) -> str:
    return _text_arg("lower", text).lower()


@_function("trim(text)", "text", "The text without leading and trailing spaces (including "
           "full-width spaces).", "去掉首尾空白（含全角空格）。", ('trim("  a b ")', '"a b"'))
def _trim(env: _Evaluator, text: Any) -> str:
    return _text_arg("trim", text).strip()


@_function("concat(value, ...)", "text", "Joins the values as text; none counts as \"\".",
           "把各值转为文本后连接；none 视为 \"\"。",
           ('concat("No.", 7, none, "-", 1.50)', '"No.7-1.50"'))
def _concat(env: _Evaluator, *values: Any) -> str:
    parts = [_to_text(value) for value in values]
    _check_size(sum(len(p) for p in parts), "text")
    return "".join(parts)


@_function("contains(text_or_list, part)", "text",
           "Whether the text contains the part, or the list contains the item; none gives false.",
           "文本是否包含 part，或列表是否包含该元素；none 得 false。",
           ('contains("华东大区", "华东")', "true"), ('contains(["a", "b"], "c")', "false"))
def _contains_fn(env: _Evaluator, container: Any, part: Any) -> bool:
    return _contains(container, part, "contains()")


@_function("startswith(text, prefix)", "text", "Whether the text starts with prefix.",
           "文本是否以 prefix 开头。", ('startswith("SO-001", "SO-")', "true"))
def _startswith(env: _Evaluator, text: Any, prefix: Any) -> bool:
    return text is not None and _text_arg("startswith", text).startswith(
        _text_arg("startswith", prefix))


@_function("endswith(text, suffix)", "text", "Whether the text ends with suffix.",
           "文本是否以 suffix 结尾。", ('endswith("a.pdf", ".pdf")', "true"))
def _endswith(env: _Evaluator, text: Any, suffix: Any) -> bool:
    return text is not None and _text_arg("endswith", text).endswith(
        _text_arg("endswith", suffix))


def _count_arg(fn: str, value: Any) -> int:
    count = _int_arg(fn, value, "a count of 0 or more")
    if count < 0:
        raise _runtime_error(f"{fn}() needs a count of 0 or more, got {count}")
    return count


@_function("left(text, n)", "text", "The first n characters.", "前 n 个字符。",
           ('left("20260131", 4)', '"2026"'))
def _left(env: _Evaluator, text: Any, count: Any) -> str:
    return _text_arg("left", text)[:_count_arg("left", count)]


@_function("right(text, n)", "text", "The last n characters.", "后 n 个字符。",
           ('right("20260131", 2)', '"31"'))
def _right(env: _Evaluator, text: Any, count: Any) -> str:
    value, n = _text_arg("right", text), _count_arg("right", count)
    return value[len(value) - n:] if n else ""


@_function("substr(text, start, length=none)", "text",
           "length characters from position start (the first character is 1); without length, "
           "to the end.",
           "从第 start 个字符（从 1 起）开始取 length 个字符；省略 length 则取到末尾。",
           ('substr("ABCDEF", 2, 3)', '"BCD"'), ('substr("ABCDEF", 5)', '"EF"'))
def _substr(env: _Evaluator, text: Any, start: Any, length: Any = None) -> str:
    value = _text_arg("substr", text)
    begin = _int_arg("substr", start, "a start position of 1 or more")
    if begin < 1:
        raise _runtime_error(f"substr() positions start at 1, got {begin}")
    if length is None:
        return value[begin - 1:]
    return value[begin - 1:begin - 1 + _count_arg("substr", length)]


@_function("replace(text, old, new)", "text", "The text with every old replaced by new.",
           "把文本中所有 old 替换为 new。", ('replace("a-b-c", "-", "/")', '"a/b/c"'))
def _replace(env: _Evaluator, text: Any, old: Any, new: Any) -> str:
    value, old_text, new_text = (_text_arg("replace", text), _text_arg("replace", old),
                                 _text_arg("replace", new))
    if not old_text:
        return value
    _check_size(len(value) + value.count(old_text) * (len(new_text) - len(old_text)), "text")
    return value.replace(old_text, new_text)


_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=|\\k<|\\g<")
_BOUNDED_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")


@lru_cache(maxsize=256)
def _safe_regex(pattern: str) -> regex.Pattern[str]:
    """Compile a matches() pattern, refusing what obviously backtracks catastrophically.

    The search itself is bounded by a timeout (see _matches), whatever the
    pattern; this check only turns the obvious cases into an error at save:
    the pattern is short, back-references are refused, and a group repeated
    more than once ((...)+, (...)*, (...){2,}, (...){25}) may contain neither
    another repetition nor an alternation ((a+)+, (a|aa)*, (.*a){25}).
    """
    if len(pattern) > MAX_REGEX_PATTERN:
        raise _limit_error(f"a matches() pattern has {len(pattern)} characters; the limit is "
                           f"{MAX_REGEX_PATTERN}")
    if _BACKREFERENCE.search(pattern):
        raise ExpressionError("back-references are not allowed in matches() patterns",
                              kind="forbidden")
    groups: list[dict[str, bool]] = []  # per open group: contains a repetition / an alternation
    closed: dict[str, bool] | None = None  # the group that just closed, if the last atom was one
    i = 0
    while i < len(pattern):
        char = pattern[i]
        repeat = _BOUNDED_REPEAT.match(pattern, i) if char == "{" else None
        if char == "\\":
            i, closed = i + 2, None
            continue
        if char == "[":
            end = i + 1 + (pattern[i + 1:i + 2] == "^")
            end += pattern[end:end + 1] == "]"
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            i, closed = end + 1, None
            continue
        if char == "(":
            groups.append({"repeat": False, "alternation": False})
        elif char == ")" and groups:
            closed = groups.pop()
            if groups:
                groups[-1]["repeat"] |= closed["repeat"]
                groups[-1]["alternation"] |= closed["alternation"]
            i += 1
            continue
        elif char == "|" and groups:
            groups[-1]["alternation"] = True
        elif char in "*+" or repeat:
            repeats = char in "*+" or (repeat is not None and _repeats_more_than_once(repeat))
            if repeats and closed and (closed["repeat"] or closed["alternation"]):
                raise ExpressionError("a repeated group may not contain another repetition or "
                                      "an alternation, e.g. (a+)+, (a|b)* or (.*a){25}; "
                                      "simplify the pattern", kind="forbidden")
            if repeats and groups:
                groups[-1]["repeat"] = True
            i += len(repeat.group(0)) if repeat else 1
            closed = None
            continue
        closed = None
        i += 1
    try:
        # ASCII classes (\d, \w) behave like JavaScript's, so the web UI agrees;
        # V0 is the syntax of Python's re.
        return regex.compile(pattern, regex.ASCII | regex.V0)
    except (regex.error, OverflowError, ValueError) as exc:
        raise _runtime_error(f"invalid matches() pattern: {exc}") from None


def _repeats_more_than_once(repeat: re.Match[str]) -> bool:
    """Whether a counted repetition {m}, {m,}, {m,n} or {,n} may repeat its atom."""
    lower, comma, upper = repeat.groups()
    if not comma:  # {m}: exactly m times
        return lower != "" and int(lower) > 1
    return upper == "" or int(upper) > 1


def _check_matches_arguments(constants: list[Any]) -> None:
    if type(constants[1]) is str:
        _safe_regex(constants[1])


@_function("matches(text, pattern)", "text",
           "Whether a regular expression finds a match in the text (use ^...$ for the whole "
           "text). \\d and \\w are ASCII only. Patterns up to 200 characters, text up to 1000; "
           "nested repetitions like (a+)+ or (.*a){25} are refused, and a search that takes "
           "too long (0.1 s per evaluation) is an error.",
           "正则表达式是否在文本中找到匹配（整段匹配请用 ^...$）。\\d、\\w 只匹配 ASCII。"
           "模式最长 200 字符、文本最长 1000 字符；(a+)+、(.*a){25} 这类嵌套重复会被拒绝，"
           "耗时过长（每次计算共 0.1 秒）的匹配会报错。",
           (r'matches("13800138000", "^1[3-9]\d{9}$")', "true"),
           check_arguments=_check_matches_arguments)
def _matches(env: _Evaluator, text: Any, pattern: Any) -> bool:
    if text is None:
        return False
    value = _text_arg("matches", text)
    if len(value) > MAX_REGEX_INPUT:
        raise _limit_error(f"matches() searches texts of up to {MAX_REGEX_INPUT} characters, "
                           f"got {len(value):,}")
    compiled = _safe_regex(_text_arg("matches", pattern))
    # Python's re cannot be interrupted; the regex engine gives up after the
    # time left for this evaluation, so no pattern can hold a worker.
    started = time.monotonic()
    try:
        found = compiled.search(value, timeout=max(env.regex_seconds, 0.001))
    except TimeoutError:
        raise _limit_error(f"matches() gave up after {MAX_REGEX_SECONDS} seconds: the pattern "
                           "backtracks too much on this text; simplify it (avoid a repeated "
                           "group that contains a repetition)") from None
    finally:
        env.regex_seconds -= time.monotonic() - started
    return found is not None


# --- math ---------------------------------------------------------------------

@_function("abs(number)", "math", "The number without its sign.", "绝对值。", ("abs(-2.5)", "2.5"))
def _abs(env: _Evaluator, value: Any) -> Any:
    number = _number_arg("abs", value)
    if type(number) is Decimal:
        return _DEC.abs(number)
    return None if number is None else abs(number)


_QUANTUMS = [Decimal(1).scaleb(-digits) for digits in range(21)]


@_function("round(number, digits=0)", "math",
           "Rounds half up (2.5 → 3, -2.5 → -3) to 0-20 decimal places; a decimal keeps exactly "
           "that many places, an integer is returned unchanged.",
           "四舍五入到 0-20 位小数（2.5 → 3，-2.5 → -3）；"
           "小数结果保留恰好 digits 位，整数原样返回。",
           ("round(2.345, 2)", "2.35"), ("round(2.5)", "3"))
def _round(env: _Evaluator, value: Any, digits: Any = 0) -> Any:
    places = _int_arg("round", digits)
    if not 0 <= places <= 20:
        raise _runtime_error(f"round() takes 0 to 20 decimal places, got {places}")
    number = _number_arg("round", value)
    if type(number) is Decimal:
        return number.quantize(_QUANTUMS[places], rounding=ROUND_HALF_UP, context=_DEC)
    return number


def _to_integral(fn: str, value: Any, rounding: str) -> int | None:
    number = _number_arg(fn, value)
    if type(number) is Decimal:
        return _decimal_to_int(number.to_integral_value(rounding=rounding, context=_DEC))
    return number  # type: ignore[return-value]


@_function("floor(number)", "math", "The largest integer not above the number.",
           "不大于该数的最大整数。", ("floor(-2.5)", "-3"))
def _floor(env: _Evaluator, value: Any) -> int | None:
    return _to_integral("floor", value, ROUND_FLOOR)


@_function("ceil(number)", "math", "The smallest integer not below the number.",
           "不小于该数的最小整数。", ("ceil(2.1)", "3"))
def _ceil(env: _Evaluator, value: Any) -> int | None:
    return _to_integral("ceil", value, ROUND_CEILING)


def _spread(env: _Evaluator, values: tuple[Any, ...]) -> list[Any]:
    if len(values) == 1 and type(values[0]) in (list, tuple):
        return _list_arg(env, "", values[0])
    return list(values)


@_function("min(value, ...)", "math", "The smallest value (numbers, texts or dates), of the "
           "arguments or of one list; none values are skipped.",
           "最小值（数字、文本或日期），取各参数或一个列表中的；忽略 none。",
           ("min(3, 1.5, none)", "1.5"), ("min([4, 2])", "2"))
def _min(env: _Evaluator, first: Any, *rest: Any) -> Any:
    return _extreme("min", _spread(env, (first, *rest)), pick_larger=False)


@_function("max(value, ...)", "math", "The largest value, like min.", "最大值，用法同 min。",
           ('max("a", "b")', '"b"'), ("max([4, 2])", "4"))
def _max(env: _Evaluator, first: Any, *rest: Any) -> Any:
    return _extreme("max", _spread(env, (first, *rest)), pick_larger=True)


@_function("sum(list)", "math", "The sum of a list of numbers (none items skipped); [] gives 0.",
           "数字列表之和（忽略 none）；空列表得 0。", ("sum([1, 2.5, none])", "3.5"))
def _sum(env: _Evaluator, values: Any) -> int | Decimal:
    return _total(_numbers("sum", _list_arg(env, "sum", values)))


@_function("avg(list)", "math", "The average of a list of numbers (none items skipped), as a "
           "decimal; none when there is none.",
           "数字列表的平均值（忽略 none），结果为小数；无值时为 none。",
           ("avg([1, 2])", "1.5"))
def _avg(env: _Evaluator, values: Any) -> Decimal | None:
    return _average(_numbers("avg", _list_arg(env, "avg", values)))


_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(\.\d*)?|\.\d+)")


@_function("number(value)", "math", "A number read from a text like \"12\" or \"-3.50\" (an "
           "integer when there is no decimal point); \"\" and none give none.",
           "把 \"12\"、\"-3.50\" 这样的文本读成数字（无小数点时为整数）；\"\" 与 none 得 none。",
           ('number(" 3.50 ")', "3.50"), ('number("12")', "12"))
def _number(env: _Evaluator, value: Any) -> int | Decimal | None:
    value = _read(value)
    if value is None or type(value) in _NUMBER_TYPES:
        return value  # type: ignore[no-any-return]
    if type(value) is not str:
        raise _arg_error("number", "a text or a number", value)
    text = value.strip()
    if not text:
        return None
    match = _NUMBER_TEXT.fullmatch(text)
    if match and len(text) > MAX_INT_DIGITS:
        raise _limit_error(f"number() reads up to {MAX_INT_DIGITS:,} characters, got "
                           f"{len(text):,}")
    if not match:
        raise _runtime_error(f"{value[:40]!r} is not a number; write digits with an optional "
                             "sign and decimal point, like -12.5")
    return Decimal(text) if "." in text else int(text)


@_function("int(value)", "math", "The integer part of a number or numeric text (toward zero).",
           "数字或数字文本的整数部分（向零取整）。", ("int(-2.7)", "-2"), ('int("42")', "42"))
def _int(env: _Evaluator, value: Any) -> int | None:
    number = _number(env, value)
    return _decimal_to_int(number) if type(number) is Decimal else number  # type: ignore[return-value]


@_function("text(value)", "math", "The value as text: decimals keep their places, dates are "
           "2026-01-31, datetimes ISO 8601 in UTC, true/false, none gives \"\".",
           "把值转为文本：小数保留原有位数，日期为 2026-01-31，日期时间为 UTC 的 ISO 8601，"
           "布尔为 true/false，none 得 \"\"。", ("text(1.50)", '"1.50"'), ("text(date(2026, 1, 5))",
                                                                         '"2026-01-05"'))
def _text(env: _Evaluator, value: Any) -> str:
    return _to_text(value)


# --- dates --------------------------------------------------------------------

def _local_date(env: _Evaluator, fn: str, value: Any) -> date:
    if type(value) is datetime:
        return _as_aware(value).astimezone(env.context.zone).date()
    if type(value) is date:
        return value
    raise _arg_error(fn, "a date or a datetime", value)


def _instant(env: _Evaluator, fn: str, value: Any) -> datetime:
    if type(value) is datetime:
        return _as_aware(value)
    if type(value) is date:  # a date means its local midnight
        return datetime(value.year, value.month, value.day, tzinfo=env.context.zone)
    raise _arg_error(fn, "a date or a datetime", value)


@_function("now()", "date", "The current date and time (UTC; date functions convert to the "
           "organization's time zone).", "当前日期时间（UTC；日期函数会换算到组织时区）。",
           ("now()", "2026-01-31T08:00:00Z"))
def _now(env: _Evaluator) -> datetime:
    return env.context.now.astimezone(UTC)


@_function("today()", "date", "Today's date in the organization's time zone.",
           "组织时区下的今天日期。", ("today()", "2026-01-31"))
def _today(env: _Evaluator) -> date:
    return env.context.now.astimezone(env.context.zone).date()


@_function("date(year, month, day)", "date", "A date.", "构造日期。",
           ("date(2026, 2, 28)", "2026-02-28"))
def _date(env: _Evaluator, year: Any, month: Any, day: Any) -> date:
    parts = [_int_arg("date", v) for v in (year, month, day)]
    try:
        return date(*parts)
    except (ValueError, OverflowError):
        raise _runtime_error(f"there is no date {parts[0]}-{parts[1]}-{parts[2]}") from None


_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                            r"(Z|[+-]\d{2}:\d{2})?")


def _parse_temporal(env: _Evaluator, fn: str, value: Any) -> date | datetime | None:
    if value is None or type(value) in (date, datetime):
        return value  # type: ignore[no-any-return]
    text = _text_arg(fn, value).strip()
    if not text:
        return None
    try:
        if _DATE_TEXT.fullmatch(text):
            return date.fromisoformat(text)
        if _DATETIME_TEXT.fullmatch(text):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:  # local time of the organization
                moment = moment.replace(tzinfo=env.context.zone)
            return moment.astimezone(UTC)
    except ValueError:
        pass
    raise _runtime_error(f"{text[:40]!r} is not a date; write 2026-01-31 or "
                         "2026-01-31T08:00:00Z (a time without zone is local time)")


@_function("to_date(value)", "date", "The date of a text like \"2026-01-31\" or of a datetime "
           "(in the organization's time zone); \"\" and none give none.",
           "把 \"2026-01-31\" 这样的文本或日期时间（按组织时区）转为日期；\"\" 与 none 得 none。",
           ('to_date("2026-01-31")', "2026-01-31"),
           ('to_date("2026-01-31T20:00:00Z")', "2026-02-01"))
def _to_date(env: _Evaluator, value: Any) -> date | None:
    moment = _parse_temporal(env, "to_date", value)
    return None if moment is None else _local_date(env, "to_date", moment)


@_function("to_datetime(value)", "date", "The datetime of a text like \"2026-01-31T08:00:00Z\" "
           "(no zone means local time) or of a date (its local midnight).",
           "把 \"2026-01-31T08:00:00Z\" 这样的文本（无时区则为本地时间）"
           "或日期（当地零点）转为日期时间。",
           ('to_datetime("2026-01-31 08:00")', "2026-01-31T00:00:00Z"))
def _to_datetime(env: _Evaluator, value: Any) -> datetime | None:
    moment = _parse_temporal(env, "to_datetime", value)
    return None if moment is None else _instant(env, "to_datetime", moment).astimezone(UTC)


def _shift(env: _Evaluator, fn: str, value: Any, move: Callable[[date], date]) -> Any:
    if value is None:
        return None
    try:
        if type(value) is datetime:  # move the local calendar date, keep the local clock time
            moved = move(_as_aware(value).astimezone(env.context.zone))
            return cast(datetime, moved).astimezone(UTC)
        if type(value) is date:
            return move(value)
    except (OverflowError, ValueError):
        raise _runtime_error(f"{fn}() went outside the years 1-9999") from None
    raise _arg_error(fn, "a date or a datetime", value)


@_function("add_days(date, n)", "date", "The date (or datetime) n days later; n may be negative.",
           "n 天后的日期（或日期时间）；n 可为负。",
           ("add_days(date(2026, 1, 31), 1)", "2026-02-01"))
def _add_days(env: _Evaluator, value: Any, days: Any) -> Any:
    count = _int_arg("add_days", days)
    return _shift(env, "add_days", value, lambda d: d + timedelta(days=count))


def _move_months(moment: date, months: int) -> date:
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    if not 1 <= year <= 9999:
        raise ValueError(year)
    return moment.replace(year=year, month=month + 1,
                          day=min(moment.day, calendar.monthrange(year, month + 1)[1]))


@_function("add_months(date, n)", "date", "The date n months later; the day is kept or, if the "
           "month is shorter, becomes its last day.", "n 个月后的日期；该月没有这一天时取月末。",
           ("add_months(date(2026, 1, 31), 1)", "2026-02-28"))
def _add_months(env: _Evaluator, value: Any, months: Any) -> Any:
    count = _int_arg("add_months", months)
    return _shift(env, "add_months", value, lambda d: _move_months(d, count))


@_function("add_hours(datetime, n)", "date", "The datetime n hours later (n may be a decimal or "
           "negative); a date counts as its local midnight.",
           "n 小时后的日期时间（n 可为小数或负数）；日期按当地零点计。",
           ("add_hours(now(), 1.5)", "2026-01-31T09:30:00Z"))
def _add_hours(env: _Evaluator, value: Any, hours: Any) -> datetime | None:
    amount = _number_arg("add_hours", hours)
    if value is None or amount is None:
        return None
    micro = _decimal_to_int(_DEC.multiply(amount, 3_600_000_000))
    try:
        return (_instant(env, "add_hours", value) + timedelta(microseconds=micro)).astimezone(UTC)
    except OverflowError:
        raise _runtime_error("add_hours() went outside the years 1-9999") from None


@_function("days_between(start, end)", "date", "Calendar days from start to end (negative if end "
           "is earlier); datetimes count by their local date.",
           "从 start 到 end 的天数（end 更早则为负）；日期时间按当地日期计。",
           ("days_between(date(2026, 1, 1), date(2026, 3, 1))", "59"))
def _days_between(env: _Evaluator, start: Any, end: Any) -> int | None:
    if start is None or end is None:
        return None
    return (_local_date(env, "days_between", end) - _local_date(env, "days_between", start)).days


@_function("hours_between(start, end)", "date", "Hours from start to end, as a decimal "
           "(negative if end is earlier).", "从 start 到 end 的小时数（小数；end 更早则为负）。",
           ('hours_between(to_datetime("2026-01-31T08:00:00Z"), now())', "0"))
def _hours_between(env: _Evaluator, start: Any, end: Any) -> Decimal | None:
    if start is None or end is None:
        return None
    delta = _instant(env, "hours_between", end) - _instant(env, "hours_between", start)
    return _DEC.divide(delta // timedelta(microseconds=1), 3_600_000_000)


def _date_part(fn: str, part: Callable[[date], int]) -> Callable[..., int | None]:
    def implementation(env: _Evaluator, value: Any) -> int | None:
        return None if value is None else part(_local_date(env, fn, value))

    return implementation


for _name, _en, _zh, _part, _example in (
    ("year", "The year of a date.", "日期的年份。", lambda d: d.year, "2026"),
    ("month", "The month of a date (1-12).", "日期的月份（1-12）。", lambda d: d.month, "1"),
    ("day", "The day of the month (1-31).", "日期是当月第几天（1-31）。", lambda d: d.day, "31"),
    ("weekday", "The day of the week: 1 = Monday … 7 = Sunday.", "星期几：1 = 周一 … 7 = 周日。",
     lambda d: d.isoweekday(), "6"),
):
    _function(f"{_name}(date)", "date", _en + " Datetimes count by their local date.",
              _zh + "日期时间按当地日期计。", (f"{_name}(date(2026, 1, 31))", _example))(
        _date_part(_name, _part))

_DATE_TOKENS = re.compile(r"YYYY|YY|MM|DD|HH|mm|ss|M|D|H")


@_function("format_date(date, pattern=\"YYYY-MM-DD\")", "date",
           "The date as text. Pattern letters: YYYY YY MM M DD D HH H mm ss; anything else is "
           "copied. Datetimes are shown in local time.",
           "把日期格式化为文本。格式符：YYYY YY MM M DD D HH H mm ss，其余字符原样输出；"
           "日期时间按当地时间显示。",
           ('format_date(date(2026, 1, 5), "YYYY年M月D日")', '"2026年1月5日"'),
           ('format_date(now(), "MM/DD HH:mm")', '"01/31 16:00"'))
def _format_date(env: _Evaluator, value: Any, pattern: Any = "YYYY-MM-DD") -> str:
    layout = _text_arg("format_date", pattern)
    if len(layout) > MAX_DATE_PATTERN:
        raise _limit_error(f"format_date() patterns have up to {MAX_DATE_PATTERN} characters")
    if value is None:
        return ""
    if type(value) is datetime:
        moment = _as_aware(value).astimezone(env.context.zone)
    elif type(value) is date:
        moment = datetime(value.year, value.month, value.day)
    else:
        raise _arg_error("format_date", "a date or a datetime", value)
    parts = {"YYYY": f"{moment.year:04d}", "YY": f"{moment.year % 100:02d}",
             "MM": f"{moment.month:02d}", "M": str(moment.month), "DD": f"{moment.day:02d}",
             "D": str(moment.day), "HH": f"{moment.hour:02d}", "H": str(moment.hour),
             "mm": f"{moment.minute:02d}", "ss": f"{moment.second:02d}"}
    return _DATE_TOKENS.sub(lambda m: parts[m.group(0)], layout)


# --- aggregates over sub-table rows --------------------------------------------

@_function("sum_of(rows, \"field\")", "aggregate", "Sum of a field over sub-table rows (none "
           "skipped); no rows give 0.", "子表各行某字段之和（忽略 none）；无行得 0。",
           ('sum_of(record.lines, "qty")', "5"))
def _sum_of(env: _Evaluator, rows: Any, field_name: Any) -> int | Decimal:
    return _total(_numbers("sum_of", _field_values(env, "sum_of", rows, field_name)))


@_function("avg_of(rows, \"field\")", "aggregate", "Average of a field over rows, as a decimal; "
           "none when no row has a value.", "子表各行某字段的平均值（小数）；都无值时为 none。",
           ('avg_of(record.lines, "qty")', "2.5"))
def _avg_of(env: _Evaluator, rows: Any, field_name: Any) -> Decimal | None:
    return _average(_numbers("avg_of", _field_values(env, "avg_of", rows, field_name)))


@_function("min_of(rows, \"field\")", "aggregate", "Smallest value of a field over rows.",
           "子表各行某字段的最小值。", ('min_of(record.lines, "qty")', "2"))
def _min_of(env: _Evaluator, rows: Any, field_name: Any) -> Any:
    return _extreme("min_of", _field_values(env, "min_of", rows, field_name), pick_larger=False)


@_function("max_of(rows, \"field\")", "aggregate", "Largest value of a field over rows.",
           "子表各行某字段的最大值。", ('max_of(record.lines, "qty")', "3"))
def _max_of(env: _Evaluator, rows: Any, field_name: Any) -> Any:
    return _extreme("max_of", _field_values(env, "max_of", rows, field_name), pick_larger=True)


@_function("count_of(rows)", "aggregate", "Number of rows; none gives 0.", "行数；none 得 0。",
           ("count_of(record.lines)", "2"))
def _count_of(env: _Evaluator, rows: Any) -> int:
    return len(_list_arg(env, "count_of", rows))


@_function("count_if(rows, \"field\", value)", "aggregate", "Number of rows whose field equals "
           "value (same rule as ==).", "某字段等于 value 的行数（规则同 ==）。",
           ('count_if(record.lines, "gift", true)', "1"))
def _count_if(env: _Evaluator, rows: Any, field_name: Any, value: Any) -> int:
    if type(field_name) is not str:
        raise _arg_error("count_if", "a field name in quotes as second argument", field_name)
    items = _list_arg(env, "count_if", rows)
    if not all(isinstance(row, Mapping) for row in items):
        raise _type_error("count_if() expects a list of rows (objects)")
    return sum(1 for row in items if _op_eq(_read(row.get(field_name)), value))
