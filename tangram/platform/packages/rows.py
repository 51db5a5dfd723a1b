"""The vocabulary of a package's data rows (``data/seed``, ``data/demo``):
``$``-keys a row may carry besides its fields, ``$``-values a field may hold,
and their checks — without a database (the loader reports every problem at
once; the installer resolves them, see ``data.py``).

Row keys::

    "$ref": "acme"                       names the row; {"$ref": "acme"} links to it
    "$owner": "rep01"                    the record's owner (and creator), a username;
                                         null: no owner (e.g. in a public pool)
    "$created_at": {"$datetime": "-45d 10:30"}   when the record was created

Values (anywhere a field value goes, sub-table rows included)::

    {"$ref": "acme"}                     the id of the row named acme
    {"$user": "rep01"}                   the id of the user named rep01 (a user field)
    {"$file": {"sha256": "…", "name": "合同.pdf", "content_type": "application/pdf",
               "size": 1234}}            a file of data/<set>/_files/<sha256> (in an
                                         attachment field's list), see packaged_files.py
    {"$date": "-45d"}                    a date relative to the install day
    {"$datetime": "-45d 10:30"}          a time of day (organization's time zone) on one

Relative dates keep demo data fresh: they are resolved against the day the
data is loaded. A spec is ``today`` or offsets ``±N`` with a unit ``d``
(days), ``w`` (weeks), ``m`` (calendar months; the day is clamped to the
month's end) or ``y`` (years), applied left to right: ``-45d``, ``+2w``,
``-1y+2m-3d``. ``$datetime`` adds ``HH:MM`` (or ``HH:MM:SS``); without one it
is midnight.

    >>> resolve_date("-1m", today=date(2026, 3, 31))
    datetime.date(2026, 2, 28)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tangram.errors import ErrorItem
from tangram.metamodel.forms import SYSTEM_FIELDS, Form
from tangram.platform.auth.service import normalize_username

REF = "$ref"  # a data row's name, and a relation value pointing at a named row
OWNER = "$owner"
CREATED_AT = "$created_at"
DATE = "$date"
DATETIME = "$datetime"
USER = "$user"  # a user field's value: a username (mapped like $owner)
FILE = "$file"  # an attachment: a file the package carries, by content hash
ROW_KEYS = (REF, OWNER, CREATED_AT)  # system keys of a row, besides its fields
VALUE_KEYS = (REF, DATE, DATETIME, USER, FILE)  # one-key objects that stand for a value
FILE_KEYS = ("sha256", "name", "content_type", "size")  # a $file's description
SHA256 = re.compile(r"^[0-9a-f]{64}$")

_TERM = re.compile(r"([+-])(\d{1,5})([dwmy])")
_OFFSETS = re.compile(r"^(?:today|(?:[+-]\d{1,5}[dwmy])+)$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
DATE_HELP = ("write today, or offsets from the install day such as -45d, +2w, -3m, -1y "
             "(combined: -1y+2m-3d; d days, w weeks, m months, y years)")
DATETIME_HELP = f"{DATE_HELP}, then an optional time of day: \"-45d 10:30\""


class BadSpec(ValueError):
    """A relative date or datetime that does not parse; the message says why."""


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    following = date(year + (month == 12), month % 12 + 1, 1)
    return day.replace(year=year, month=month,
                       day=min(day.day, (following - timedelta(days=1)).day))


def resolve_date(spec: Any, *, today: date) -> date:
    """``{"$date": spec}`` → the date, counted from ``today``."""
    if not isinstance(spec, str) or not _OFFSETS.match(spec.strip()):
        raise BadSpec(f"{spec!r} is not a relative date: {DATE_HELP}")
    day = today
    try:
        for sign, amount, unit in _TERM.findall(spec):
            n = int(amount) * (-1 if sign == "-" else 1)
            if unit in "dw":
                day += timedelta(days=n * (7 if unit == "w" else 1))
            else:
                day = _add_months(day, n * (12 if unit == "y" else 1))
    except (OverflowError, ValueError) as exc:
        raise BadSpec(f"{spec!r} is out of the calendar's range") from exc
    return day


def resolve_datetime(spec: Any, *, today: date, timezone: str) -> datetime:
    """``{"$datetime": spec}`` → an aware datetime: the time of day in the
    organization's ``timezone`` on the relative date."""
    if not isinstance(spec, str):
        raise BadSpec(f"{spec!r} is not a relative datetime: {DATETIME_HELP}")
    day_part, _, time_part = spec.strip().partition(" ")
    try:
        day = resolve_date(day_part, today=today)
    except BadSpec as exc:
        raise BadSpec(f"{spec!r} is not a relative datetime: {DATETIME_HELP}") from exc
    at = time()
    if time_part.strip():
        match = _TIME.match(time_part.strip())
        if match is None:
            raise BadSpec(f"{spec!r}: {time_part.strip()!r} is not a time of day (HH:MM or "
                          "HH:MM:SS, 00:00 to 23:59:59)")
        at = time(int(match[1]), int(match[2]), int(match[3] or 0))
    return datetime.combine(day, at, tzinfo=ZoneInfo(timezone))


@dataclass(frozen=True)
class Resolver:
    """Turns a row's ``$``-values into plain field values."""

    today: date
    timezone: str
    ids: Mapping[str, str]
    users: Mapping[str, str] = field(default_factory=dict)  # normalized username → id
    files: Mapping[tuple[str, str, str], str] = field(default_factory=dict)  # file_key → id

    def value(self, value: Any) -> Any:
        """Resolve ``$date``, ``$datetime``, ``$ref``, ``$user`` and ``$file``
        inside ``value``; a ``$ref`` to a row not created yet, a user or file
        not found, stay as they are (the caller reports them)."""
        if isinstance(value, dict):
            if len(value) == 1:
                if DATE in value:
                    return resolve_date(value[DATE], today=self.today).isoformat()
                if DATETIME in value:
                    return resolve_datetime(value[DATETIME], today=self.today,
                                            timezone=self.timezone).isoformat()
                if REF in value:
                    return self.ids.get(str(value[REF]), value)
                if USER in value:
                    return self.users.get(normalize_username(str(value[USER])), value)
                if FILE in value and isinstance(value[FILE], dict):
                    return self.files.get(file_key(value[FILE]), value)
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def created_at(self, value: Any) -> datetime:
        """A ``$created_at``: ``{"$datetime": …}``, ``{"$date": …}`` (midnight)
        or an ISO 8601 datetime (without an offset: the organization's zone)."""
        if isinstance(value, dict) and set(value) == {DATETIME}:
            return resolve_datetime(value[DATETIME], today=self.today, timezone=self.timezone)
        if isinstance(value, dict) and set(value) == {DATE}:
            return datetime.combine(resolve_date(value[DATE], today=self.today), time(),
                                    tzinfo=ZoneInfo(self.timezone))
        if isinstance(value, str):
            try:
                at: datetime | None = datetime.fromisoformat(value)
            except ValueError:
                at = None  # not ISO 8601: refused below
            if at is not None:
                return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(self.timezone))
        raise BadSpec(f"{value!r} is not a creation time: give {{\"$datetime\": \"-45d 10:30\"}}"
                      " (relative to the install day) or an ISO 8601 datetime")


def file_key(description: Mapping[str, Any]) -> tuple[str, str, str]:
    """What makes two ``$file`` values one stored file: the same content,
    name and content type (records sharing it share the file)."""
    return (str(description.get("sha256")), str(description.get("name")),
            str(description.get("content_type") or ""))


def tagged_in(value: Any, path: str, tag: str) -> Iterator[tuple[str, Any]]:
    """(JSON path, content) of each ``{tag: content}`` in ``value``."""
    if isinstance(value, dict):
        if set(value) == {tag}:
            yield path, value[tag]
            return
        for k, v in value.items():
            yield from tagged_in(v, f"{path}.{k}", tag)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from tagged_in(v, f"{path}[{i}]", tag)


def users_in(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(JSON path, username) of each ``{"$user": name}`` in ``value``."""
    return tagged_in(value, path, USER)


def files_in(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(JSON path, description) of each ``{"$file": {…}}`` in ``value``."""
    return tagged_in(value, path, FILE)


def row_values(row: Mapping[str, Any], i: int) -> Iterator[tuple[str, Any]]:
    """(JSON path, value) of each field of the ``i``-th row of a data file."""
    for name, value in row.items():
        if not name.startswith("$"):
            yield f"$[{i}].{name}", value


def file_problem(description: Any) -> str | None:
    """What is wrong with a ``$file``'s description (None: nothing)."""
    example = ('{"sha256": "<64 hex digits>", "name": "合同.pdf", "content_type": '
               '"application/pdf", "size": 1234}')
    if not isinstance(description, dict):
        return f"{FILE} describes a file: {example}"
    unknown = sorted(set(description) - set(FILE_KEYS))
    if unknown:
        return f"unknown key {unknown[0]!r} in {FILE}; it has {', '.join(FILE_KEYS)}"
    sha, name = description.get("sha256"), description.get("name")
    size, ctype = description.get("size"), description.get("content_type")
    if not isinstance(sha, str) or not SHA256.match(sha):
        return (f"{FILE}.sha256 is the SHA-256 of the file's content, 64 lowercase hex "
                f"digits (the name of its entry in data/<set>/_files/), not {sha!r}")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        return f"{FILE}.name is the file's name, 1 to 255 characters"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{FILE}.size is the file's size in bytes, a whole number"
    if ctype is not None and (not isinstance(ctype, str) or len(ctype) > 150):
        return f"{FILE}.content_type is a MIME type such as application/pdf"
    return None


def refs_in(value: Any) -> Iterator[str]:
    """Names of the rows ``value`` links to (``{"$ref": name}`` anywhere in it)."""
    if isinstance(value, dict):
        if set(value) == {REF}:
            yield str(value[REF])
            return
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs_in(v)


# --- checks without a database ------------------------------------------------------------

# Any fixed day checks a spec's syntax; the range check is done again at load.
_CHECK = Resolver(today=date(2000, 1, 1), timezone="UTC", ids={})


def _check_value(value: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(path, code, problem) for each ``$``-value in ``value`` that is not valid."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key in (DATE, DATETIME):
                try:
                    _CHECK.value(value)
                except BadSpec as exc:
                    yield path, "data_date", str(exc)
                return
            if key == REF:
                if not isinstance(inner, str):
                    yield path, "data_ref", f"{REF} names a row: a string"
                return
            if key == USER:
                if not isinstance(inner, str) or not inner.strip():
                    yield path, "data_user", f"{USER} names a user: a username, a string"
                return
            if key == FILE:
                problem = file_problem(inner)
                if problem:
                    yield path, "data_file", problem
                return
            if key.startswith("$"):
                yield path, "data_value", (f"unknown value {key!r}; a value may be "
                             f"{', '.join(repr(k) for k in VALUE_KEYS)}")
                return
        for k, v in value.items():
            yield from _check_value(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _check_value(v, f"{path}[{i}]")


def check_rows(file: str, data_set: str, form: Form | None, rows: Sequence[Mapping[str, Any]],
               refs: set[str]) -> list[ErrorItem]:
    """Every problem of one data file's rows: unknown fields, system columns,
    ``$``-keys and ``$``-values. ``refs`` collects the data set's row names
    (each must be unique in the set). ``form`` None (its file is broken, or
    missing — reported there): every check but the field names."""
    errors: list[ErrorItem] = []
    known = {f.key for f in form.fields} if form is not None else None

    def add(code: str, path: str, message: str) -> None:
        errors.append(ErrorItem(code=code, file=file, path=path, message=message))

    for i, row in enumerate(rows):
        for name, value in row.items():
            path = f"$[{i}].{name}"
            if name == REF:
                if not isinstance(value, str) or value in refs:
                    add("data_ref", path, f"{REF} must be a name unique in data/{data_set}")
                refs.add(str(value))
            elif name == OWNER:
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    add("data_owner", path, f"{OWNER} is the owner's username, a string "
                        "(or null: no owner)")
            elif name == CREATED_AT:
                try:
                    _CHECK.created_at(value)
                except BadSpec as exc:
                    add("data_date", path, str(exc))
            elif name.startswith("$"):
                add("data_key", path, f"unknown row key {name!r}; a row gives its fields and "
                    f"may add {', '.join(ROW_KEYS)}")
            elif name in SYSTEM_FIELDS:
                add("system_field", path, f"{name!r} is a system column; data rows give fields"
                    f" only (set the owner with {OWNER} and the creation time with "
                    f"{CREATED_AT})")
            elif known is not None and name not in known:
                assert form is not None
                add("unknown_field", path, f"form {form.key!r} has no field {name!r}")
            else:
                for where, code, problem in _check_value(value, path):
                    add(code, where, problem)
    return errors
