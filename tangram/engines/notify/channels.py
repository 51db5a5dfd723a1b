"""The channel registry: each way a message leaves Tangram is one entry.

``in_app`` and ``email`` reach users (each user chooses them in their
preferences); ``dingtalk`` and ``wecom`` are group robots configured once by an
administrator and addressed by key. Senders run in the worker, outside any
transaction, and raise :class:`DeliveryError` (retried) on failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx
from pydantic import BaseModel, Field

HTTP_TIMEOUT_SECONDS = 10.0


class DeliveryError(Exception):
    """A send failed; ``status_code`` is the peer's HTTP status when it answered."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int = 25
    user: str = ""
    password: str = ""
    sender: str = "tangram@localhost"
    tls: Literal["none", "starttls", "ssl"] = "none"


@dataclass(frozen=True)
class SendContext:
    """What a sender may need besides the payload."""

    now: datetime
    mail: MailSettings | None


Sender = Callable[[Mapping[str, Any], SendContext], int | None]


class DingTalkConfig(BaseModel):
    webhook_url: str = Field(min_length=1, max_length=2000,
                             description="The robot's URL, with its access_token.")
    secret: str = Field("", max_length=200,
                        description="The robot's signing secret (加签), SEC…; empty if unsigned.")


class WeComConfig(BaseModel):
    key: str = Field(min_length=1, max_length=200, description="The robot's webhook key.")
    base_url: str = Field("https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
                          max_length=2000)


@dataclass(frozen=True)
class ChannelKind:
    key: str
    label: dict[str, str]
    personal: bool  # chosen per user in preferences (else: a configured group robot)
    default_enabled: bool
    send: Sender | None  # None: written directly (in-app)
    config_model: type[BaseModel] | None = None


# --------------------------------------------------------------------------- senders

def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, "<ts>\\n<secret>")),
    URL-encoded, sent with ``timestamp`` as query parameters."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def _post_robot(url: str, body: Mapping[str, Any]) -> int:
    try:
        response = httpx.post(url, content=json.dumps(body, ensure_ascii=False).encode(),
                              headers={"Content-Type": "application/json; charset=utf-8"},
                              timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"could not reach the robot: {exc}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"the robot answered HTTP {response.status_code}",
                            response.status_code)
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    # Both robots answer 200 with {"errcode": n, "errmsg": …}; non-zero is a refusal.
    if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
        raise DeliveryError(f"the robot refused the message: errcode {answer.get('errcode')} "
                            f"{answer.get('errmsg', '')}", response.status_code)
    return response.status_code


def _robot_text(payload: Mapping[str, Any]) -> str:
    title, body = payload.get("title", ""), payload.get("body", "")
    return f"{title}\n{body}" if body else title


def send_dingtalk(payload: Mapping[str, Any], sc: SendContext) -> int:
    config = DingTalkConfig.model_validate(payload["config"])
    url = config.webhook_url
    if config.secret:
        ts = int(sc.now.timestamp() * 1000)
        url += ("&" if "?" in url else "?") + \
            f"timestamp={ts}&sign={dingtalk_sign(config.secret, ts)}"
    return _post_robot(url, {"msgtype": "text", "text": {"content": _robot_text(payload)}})


def send_wecom(payload: Mapping[str, Any], sc: SendContext) -> int:
    config = WeComConfig.model_validate(payload["config"])
    url = f"{config.base_url}?key={quote_plus(config.key)}"
    return _post_robot(url, {"msgtype": "text", "text": {"content": _robot_text(payload)}})


def send_email(payload: Mapping[str, Any], sc: SendContext) -> None:
    mail = sc.mail
    if mail is None or not mail.host:
        raise DeliveryError("email is not configured (set TANGRAM_SMTP_HOST)")
    msg = EmailMessage()
    msg["Subject"] = payload["title"]
    msg["From"] = mail.sender
    msg["To"] = ", ".join(payload["to"])
    msg.set_content(payload.get("body", ""), charset="utf-8")
    try:
        smtp: smtplib.SMTP
        if mail.tls == "ssl":
            smtp = smtplib.SMTP_SSL(mail.host, mail.port, timeout=HTTP_TIMEOUT_SECONDS,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(mail.host, mail.port, timeout=HTTP_TIMEOUT_SECONDS)
        with smtp:
            if mail.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if mail.user:
                smtp.login(mail.user, mail.password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"the mail server refused or failed: {exc}") from None
    return None


CHANNELS: dict[str, ChannelKind] = {}


def register_channel(kind: ChannelKind) -> ChannelKind:
    CHANNELS[kind.key] = kind
    return kind


register_channel(ChannelKind("in_app", {"zh": "站内通知", "en": "In-app"}, personal=True,
                             default_enabled=True, send=None))
register_channel(ChannelKind("email", {"zh": "电子邮件", "en": "Email"}, personal=True,
                             default_enabled=False, send=send_email))
register_channel(ChannelKind("dingtalk", {"zh": "钉钉群机器人", "en": "DingTalk group robot"},
                             personal=False, default_enabled=False, send=send_dingtalk,
                             config_model=DingTalkConfig))
register_channel(ChannelKind("wecom", {"zh": "企业微信群机器人", "en": "WeCom group robot"},
                             personal=False, default_enabled=False, send=send_wecom,
                             config_model=WeComConfig))
