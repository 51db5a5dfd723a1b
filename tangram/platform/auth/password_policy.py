"""The password policy: one entry per rule, each with its message. Read by
account creation and password changes, and listed in docs/permissions.md.

    problems("zhangsan", "zhangsan")  # [("username", "must not be the username …")]
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

MIN_LENGTH = 8
MAX_LENGTH = 1024
# The most common passwords of leaked lists (and their Chinese favourites).
COMMON = frozenset({
    "password", "password1", "password123", "12345678", "123456789", "1234567890",
    "qwerty123", "qwertyuiop", "11111111", "88888888", "66666666", "iloveyou", "admin123",
    "abc12345", "abcd1234", "1qaz2wsx", "woaini1314", "a1234567", "aa123456", "qq123456",
    "1q2w3e4r", "passw0rd", "welcome1", "changeme", "letmein1", "p@ssw0rd",
})


@dataclass(frozen=True)
class PasswordRule:
    key: str
    message: str
    broken: Callable[[str, str], bool]  # (username, password) -> True when the rule is broken


def _classes(password: str) -> int:
    groups = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    found = sum(any(c in g for c in password) for g in groups)
    return found + any(not c.isascii() or c in string.punctuation or c.isspace()
                       for c in password)


PASSWORD_RULES: tuple[PasswordRule, ...] = (
    PasswordRule("length", f"use {MIN_LENGTH} to {MAX_LENGTH} characters",
                 lambda u, p: not MIN_LENGTH <= len(p) <= MAX_LENGTH),
    PasswordRule("variety", "mix at least two of: lower-case letters, upper-case letters, "
                 "digits, other characters", lambda u, p: _classes(p) < 2),
    PasswordRule("username", "must not be the username (or the username reversed)",
                 lambda u, p: p.lower() in {u.lower(), u.lower()[::-1]}),
    PasswordRule("common", "is one of the most common passwords",
                 lambda u, p: p.lower() in COMMON),
)


def problems(username: str, password: str) -> list[tuple[str, str]]:
    """(rule key, message) of every rule the password breaks."""
    return [(r.key, r.message) for r in PASSWORD_RULES if r.broken(username, password)]
