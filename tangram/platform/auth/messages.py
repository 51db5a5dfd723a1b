"""Messages of the sign-in errors, in the languages the API speaks (zh, en).

They are chosen by the request's Accept-Language (before sign-in nothing else
is known about the caller), falling back to English.
"""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "invalid_credentials": {"en": "The username or password is not correct.",
                            "zh": "用户名或密码不正确。"},
    "account_disabled": {"en": "The account {username!r} is disabled.",
                         "zh": "账号“{username}”已停用。"},
    "token_unknown": {"en": "The session token is not valid; sign in again.",
                      "zh": "登录凭证无效，请重新登录。"},
    "session_revoked": {"en": "This session has been signed out; sign in again.",
                        "zh": "此登录已退出，请重新登录。"},
    "session_expired": {"en": "This session expired at {expires_at}; sign in again.",
                        "zh": "登录已于 {expires_at} 过期，请重新登录。"},
    "bearer_malformed": {"en": "The Authorization header must be 'Bearer <token>'.",
                         "zh": "Authorization 请求头的格式应为“Bearer <token>”。"},
    "sign_in_required": {"en": "Sign in first: send 'Authorization: Bearer <token>' or the "
                               "{cookie} cookie (POST {login_url} issues both).",
                         "zh": "请先登录：发送“Authorization: Bearer <token>”请求头或 {cookie} "
                               "Cookie（POST {login_url} 会同时签发两者）。"},
    "admin_required": {"en": "Only administrators may do this.",
                       "zh": "只有管理员可以执行此操作。"},
}


def text(key: str, language: str, **params: Any) -> str:
    entry = MESSAGES[key]
    return (entry.get(language) or entry["en"]).format(**params)
