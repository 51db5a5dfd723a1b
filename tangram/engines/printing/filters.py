"""Filters print templates may use besides jinja2's built-in ones — one entry
each, read by the template environment, the save-time check and the docs
(docs/print.md lists every entry; a test keeps them equal).

    {{ record.amount | rmb_upper }}        壹佰贰拾万元整
    {{ record.amount | money }}            ¥1,200,000.00
    {{ record.sign_date | date("%Y年%m月%d日") }}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from jinja2 import Undefined

from tangram.errors import TangramError

DIGITS = "零壹贰叁肆伍陆柒捌玖"
GROUP_UNITS = ("", "万", "亿", "万亿")
MAX_RMB = Decimal(10) ** 16


class AmountOutOfRange(TangramError):
    """A number cannot be written in Chinese capital numerals (≥ 10¹⁶)."""

    status = 422
    code = "amount_out_of_range"


def _raw(value: Any) -> Any:
    """A template value's raw value: formatted field values carry it as ``.raw``."""
    if isinstance(value, Undefined):
        return None
    return getattr(value, "raw", value)


def _decimal(value: Any) -> Decimal | None:
    value = _raw(value)
    if value is None or value == "":
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _four_digits(n: int) -> str:
    """1 ≤ n < 10000 in capital numerals, zeros inside collapsed (1005 → 壹仟零伍)."""
    out, zero = "", False
    for step, unit in ((1000, "仟"), (100, "佰"), (10, "拾"), (1, "")):
        digit = n // step % 10
        if digit == 0:
            zero = zero or bool(out)
        else:
            out += ("零" if zero else "") + DIGITS[digit] + unit
            zero = False
    return out


def _integer_words(n: int) -> str:
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out, gap = "", False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            gap = gap or bool(out)
            continue
        if out and (gap or group < 1000):
            out += "零"
        unit = GROUP_UNITS[index]
        if index == 3 and groups[2]:
            unit = "万"  # 12345亿 is 壹万贰仟叁佰肆拾伍亿, not 壹万亿贰仟…亿
        out += _four_digits(group) + unit
        gap = False
    return out


def rmb_upper(value: Any) -> str:
    """An amount in Chinese capital numerals as written on contracts and
    cheques (大写金额), rounded to the fen: 1200000 → 壹佰贰拾万元整,
    10005.5 → 壹万零伍元伍角, 0.05 → 伍分. Empty for an empty value."""
    number = _decimal(value)
    if number is None:
        return ""
    number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if abs(number) >= MAX_RMB:
        raise AmountOutOfRange(f"{number} is too large for capital numerals (below 10^16)")
    sign = "负" if number < 0 else ""
    number = abs(number)
    whole = int(number)
    cents = int((number - whole) * 100)
    jiao, fen = divmod(cents, 10)
    if whole == 0 and cents == 0:
        return "零元整"
    out = _integer_words(whole) + "元" if whole else ""
    if cents == 0:
        return sign + out + "整"
    if jiao:
        out += DIGITS[jiao] + "角"
    elif whole:
        out += "零"
    if fen:
        out += DIGITS[fen] + "分"
    return sign + out


def money(value: Any, symbol: str = "¥", places: int = 2) -> str:
    """Thousands separators and a fixed number of decimals: 1200000 → ¥1,200,000.00
    (``money("")`` for no symbol, ``money("US$", 0)``)."""
    number = _decimal(value)
    if number is None:
        return ""
    places = max(0, min(int(places), 10))
    number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if number < 0 else ""
    return f"{sign}{symbol}{abs(number):,.{places}f}"


def date(value: Any, fmt: str = "%Y-%m-%d") -> str:
    """A date or date-time (or ISO text) in a strftime format, e.g.
    ``date("%Y年%m月%d日")``; date-times are already in the organization's zone."""
    raw = _raw(value)
    if raw is None or raw == "":
        return ""
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return raw
    if not isinstance(raw, (Date, datetime)):
        return str(raw)
    return raw.strftime(str(fmt)[:100])


@dataclass(frozen=True)
class PrintFilter:
    name: str
    function: Callable[..., Any]
    summary: dict[str, str]
    example: str


PRINT_FILTERS: dict[str, PrintFilter] = {f.name: f for f in (
    PrintFilter("rmb_upper", rmb_upper, {"zh": "大写金额", "en": "amount in Chinese capital "
                "numerals"}, "{{ record.amount | rmb_upper }} → 壹佰贰拾万元整"),
    PrintFilter("money", money, {"zh": "千分位金额", "en": "amount with thousands "
                "separators"}, "{{ record.amount | money }} → ¥1,200,000.00"),
    PrintFilter("date", date, {"zh": "日期格式", "en": "date in a strftime format"},
                "{{ record.sign_date | date(\"%Y年%m月%d日\") }} → 2026年03月01日"),
)}


def filter_functions() -> dict[str, Callable[..., Any]]:
    return {name: f.function for name, f in PRINT_FILTERS.items()}
