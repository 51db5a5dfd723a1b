"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile).

Only hashes are stored. ``verify_password`` never raises on a wrong password
or a malformed hash, so callers have one boolean to branch on.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# Module-level so tests can swap in a cheap profile (argon2.profiles.CHEAPEST);
# everything below reads it at call time.
hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def burn_verification(password: str) -> None:
    """Spend the time a real verification takes, for logins of unknown users,
    so response times do not tell which usernames exist."""
    verify_password(_dummy_hash(hasher), password)


@cache
def _dummy_hash(current: PasswordHasher) -> str:
    return current.hash("tangram-dummy-password")
