"""Semantic versions and version ranges of app packages.

A range is a comma- or space-separated list of comparators that must all hold,
npm style: ``>=1.2.0 <2.0.0``, ``^1.2`` (same major), ``~1.2.3`` (same minor),
``1.x``, ``=1.4.0`` or ``*``. ``||`` joins alternatives.

>>> satisfies(Version.parse("1.4.2"), "^1.2")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# SemVer 2.0.0 exactly: numbers without leading zeros (§2), pre-release
# identifiers non-empty and numeric ones without leading zeros either (§9).
_NUMBER = r"(?:0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_PRE = rf"{_PRE_ID}(?:\.{_PRE_ID})*"
_BUILD = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
VERSION_PATTERN = rf"^{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-{_PRE})?(?:\+{_BUILD})?$"
_VERSION_RE = re.compile(rf"^({_NUMBER})\.({_NUMBER})\.({_NUMBER})(?:-({_PRE}))?"
                         rf"(?:\+{_BUILD})?$")
_PARTIAL_RE = re.compile(rf"^({_NUMBER}|[xX*])(?:\.({_NUMBER}|[xX*]))?"
                         rf"(?:\.({_NUMBER}|[xX*]))?(?:-({_PRE}))?$")
_LEADING_ZERO = re.compile(r"(?:^|[.-])0\d")
_COMPARATOR_RE = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.+)$")
RANGE_HELP = ("a version range such as \">=1.2.0 <2.0.0\", \"^1.2\", \"~1.2.3\", \"1.x\" "
              "or \"*\"")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a semantic version like 1.4.0"
                             + _leading_zero_hint(text))
        return cls(int(m[1]), int(m[2]), int(m[3]), m[4] or "")

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A pre-release sorts before its release; its parts compare numerically
        # when numeric, else as text (semver §11).
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.pre.split(".")) \
            if self.pre else ()
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")


@dataclass(frozen=True)
class _Comparator:
    op: str
    version: Version

    def test(self, v: Version) -> bool:
        return {"=": v == self.version, ">": v > self.version, ">=": v >= self.version,
                "<": v < self.version, "<=": v <= self.version}[self.op]


def _leading_zero_hint(text: str) -> str:
    core = text.strip().split("+")[0]
    if _LEADING_ZERO.search(core):
        return (": its numbers (and numeric pre-release parts) must not have a leading "
                "zero, e.g. 1.0.0 not 01.0.0 (semver.org §2)")
    return " (MAJOR.MINOR.PATCH, an optional -pre.release and +build)"


def check_version(text: str) -> str:
    """A package version: strict SemVer (raises ValueError saying why not)."""
    Version.parse(text)
    return text


def _partial(text: str) -> tuple[list[int | None], str]:
    m = _PARTIAL_RE.match(text)
    if not m:
        hint = _leading_zero_hint(text) if _LEADING_ZERO.search(text.split("+")[0]) else ""
        raise ValueError(f"{text!r} is not a version; use {RANGE_HELP}{hint}")
    parts: list[int | None] = [None if p is None or p in "xX*" else int(p) for p in m.groups()[:3]]
    # "1.x.3" makes no sense: once a part is a wildcard, the rest are too.
    if None in parts:
        first = parts.index(None)
        parts = parts[:first] + [None] * (3 - first)
    return parts, m[4] or ""


def _expand(op: str, text: str) -> list[_Comparator]:
    parts, pre = _partial(text)
    major, minor, patch = parts
    if major is None:
        return []
    low = Version(major, minor or 0, patch or 0, pre)
    if op == "^":
        upper = (Version(major + 1, 0, 0) if major or minor is None else
                 Version(0, minor + 1, 0) if minor or patch is None else Version(0, 0, patch + 1))
        return [_Comparator(">=", low), _Comparator("<", upper)]
    if op == "~":
        upper = Version(major, minor + 1, 0) if minor is not None else Version(major + 1, 0, 0)
        return [_Comparator(">=", low), _Comparator("<", upper)]
    if minor is None or patch is None:  # a partial version: "1.x", ">=1.2"
        upper = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
        return {"": [_Comparator(">=", low), _Comparator("<", upper)],
                "=": [_Comparator(">=", low), _Comparator("<", upper)],
                ">=": [_Comparator(">=", low)], ">": [_Comparator(">=", upper)],
                "<": [_Comparator("<", low)], "<=": [_Comparator("<", upper)]}[op]
    return [_Comparator(op or "=", low)]


def _parse_set(text: str) -> list[_Comparator]:
    # Let ">= 1.2" be written with a space: glue operators to their version.
    tokens = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", text.replace(",", " ")).split()
    out: list[_Comparator] = []
    for token in tokens:
        m = _COMPARATOR_RE.match(token)
        assert m is not None
        out.extend(_expand(m[1] or "", m[2]))
    return out


def parse_range(text: str) -> list[list[_Comparator]]:
    """Parse a range; raises ValueError with what is allowed."""
    if not isinstance(text, str) or not text.strip() or len(text) > 200:
        raise ValueError(f"{text!r} is not {RANGE_HELP}")
    return [_parse_set(alt) for alt in text.split("||")]


def check_range(text: str) -> str:
    parse_range(text)
    return text


def satisfies(version: Version, range_text: str) -> bool:
    """Whether ``version`` is in the range. Pre-releases only match a range
    that names a pre-release itself (as npm does), so ``^1.0`` never picks
    ``2.0.0-beta``."""
    for alternative in parse_range(range_text):
        if version.pre and not any(c.version.pre for c in alternative):
            continue
        if all(c.test(version) for c in alternative):
            return True
    return False
