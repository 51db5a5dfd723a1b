"""Localized messages for error codes. One catalog; engines pass code + params,
and the message is rendered in the caller's language."""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "required": {"en": "{label} is required", "zh": "{label}为必填项"},
    "type": {"en": "{label} must be {expected}", "zh": "{label}必须是{expected_zh}"},
    "min": {"en": "{label} must be at least {limit}", "zh": "{label}不能小于{limit}"},
    "max": {"en": "{label} must be at most {limit}", "zh": "{label}不能大于{limit}"},
    "min_length": {"en": "{label} must have at least {limit} characters",
                   "zh": "{label}至少需要{limit}个字符"},
    "max_length": {"en": "{label} must have at most {limit} characters",
                   "zh": "{label}最多{limit}个字符"},
    "pattern": {"en": "{label} does not have the required format",
                "zh": "{label}格式不正确"},
    "phone": {"en": "{label} is not a valid phone number ({preset})",
              "zh": "{label}不是有效的电话号码"},
    "email": {"en": "{label} is not a valid email address", "zh": "{label}不是有效的邮箱地址"},
    "url": {"en": "{label} is not a valid http(s) URL", "zh": "{label}不是有效的网址"},
    "option": {"en": "{label}: {value!r} is not one of the options ({allowed})",
               "zh": "{label}：{value!r}不是可选项（{allowed}）"},
    "min_items": {"en": "{label} needs at least {limit} item(s)",
                  "zh": "{label}至少选择{limit}项"},
    "max_items": {"en": "{label} allows at most {limit} item(s)",
                  "zh": "{label}最多选择{limit}项"},
    "scale": {"en": "{label} allows at most {limit} digits after the decimal point",
              "zh": "{label}最多{limit}位小数"},
    "precision": {"en": "{label} has too many digits (at most {limit} in total)",
                  "zh": "{label}位数过多（最多{limit}位）"},
    "unique": {"en": "{label} {value!r} is already used by another record",
               "zh": "{label}“{value}”已被其他记录使用"},
    "relation_missing": {"en": "{label}: the linked record {value} does not exist",
                         "zh": "{label}：关联的记录{value}不存在"},
    "user_missing": {"en": "{label}: user {value} does not exist",
                     "zh": "{label}：用户{value}不存在"},
    "department_missing": {"en": "{label}: department {value} does not exist",
                           "zh": "{label}：部门{value}不存在"},
    "file_missing": {"en": "{label}: file {value} does not exist or was not uploaded",
                     "zh": "{label}：文件{value}不存在"},
    "file_type": {"en": "{label}: file type {value} is not allowed ({allowed})",
                  "zh": "{label}：不允许的文件类型{value}（允许：{allowed}）"},
    "file_size": {"en": "{label}: file is larger than {limit} MB",
                  "zh": "{label}：文件超过{limit} MB"},
    "region": {"en": "{label}: {value!r} is not a province-level region of China",
               "zh": "{label}：{value}不是有效的省级行政区"},
    "region_levels": {"en": "{label} needs {levels}", "zh": "{label}需要填写{levels_zh}"},
    "region_city": {"en": "{label}: {value!r} is not a city of {province}",
                    "zh": "{label}：{value}不是{province}的城市"},
    "region_district": {"en": "{label}: {value!r} is not a district of {city}",
                        "zh": "{label}：{value}不是{city}的区县"},
    "read_only": {"en": "{label} is read-only and cannot be set", "zh": "{label}为只读，不能修改"},
    "unknown_field": {"en": "{field} is not a field of this form",
                      "zh": "{field}不是此表单的字段"},
    "hidden": {"en": "{label} is not shown in this case and must be empty",
               "zh": "{label}当前不可见，不能填写"},
    "rule": {"en": "{message}", "zh": "{message}"},
    "min_rows": {"en": "{label} needs at least {limit} row(s)", "zh": "{label}至少需要{limit}行"},
    "max_rows": {"en": "{label} allows at most {limit} row(s)", "zh": "{label}最多{limit}行"},
    "expression": {"en": "{label}: the expression failed: {error}",
                   "zh": "{label}：表达式计算出错：{error}"},
    "tag_length": {"en": "{label}: tag {value!r} is longer than {limit} characters",
                   "zh": "{label}：标签“{value}”超过{limit}个字符"},
    "validation_failed": {"en": "{count} validation error(s)", "zh": "{count} 处填写有误"},
}

TYPE_NAMES_ZH = {
    "a text": "文本", "an integer": "整数", "a number": "数字", "true or false": "是或否",
    "a date (YYYY-MM-DD)": "日期（YYYY-MM-DD）",
    "a date-time (ISO 8601 with time zone)": "日期时间（ISO 8601，含时区）",
    "a time (HH:MM[:SS])": "时间（HH:MM[:SS]）", "a list": "列表", "an object": "对象",
    "a record id": "记录ID", "a user id": "用户ID", "a department id": "部门ID",
    "a list of rows": "行列表",
    "a single-line text (no line breaks or control characters)": "单行文本（不含换行或控制字符）",
    "a text without NUL characters": "不含 NUL 字符的文本",
    "a text of whole characters (no lone UTF-16 surrogates)":
        "由完整字符组成的文本（不含单独的 UTF-16 代理项）",
    "a date-time between the years 1 and 9999 in UTC": "UTC 下 1 至 9999 年之间的日期时间",
}


def message(code: str, language: str, **params: Any) -> str:
    entry = MESSAGES.get(code)
    if entry is None:
        return code
    template = _pick(entry, language)
    if "expected" in params:
        params.setdefault("expected_zh", TYPE_NAMES_ZH.get(params["expected"], params["expected"]))
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return entry["en"].format_map(_Lenient(params))


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# Texts the platform itself writes to users (not error messages): flow
# notifications ({flow}, {node}: labels; {subject}: " · " and the record's
# title, or nothing).
TEXTS: dict[str, dict[str, str]] = {
    "flow_task": {"en": "{flow} · {node}{subject}", "zh": "{flow} · {node}{subject}"},
    "flow_task_body": {"en": "A task waits for your decision.",
                       "zh": "有一项审批等待您处理。"},
    "flow_cc": {"en": "{flow} · CC{subject}", "zh": "{flow} · 抄送{subject}"},
    "flow_cc_body": {"en": "You were copied at {node}.", "zh": "您在「{node}」环节被抄送。"},
    "flow_reminder": {"en": "{flow} · reminder{subject}", "zh": "{flow} · 催办提醒{subject}"},
    "flow_reminder_body": {"en": "{node} is waiting for you.",
                           "zh": "「{node}」环节正在等待您处理。"},
    "flow_urge": {"en": "{flow} · please decide{subject}", "zh": "{flow} · 请尽快处理{subject}"},
    "flow_urge_body": {"en": "The submitter asks you to decide.",
                       "zh": "提交人请您尽快处理。"},
    "flow_assigned": {"en": "{flow} · assigned to you{subject}",
                      "zh": "{flow} · 已分配给您{subject}"},
    # Report alerts ({label}: the alert's; {value}, {previous}, {threshold}: numbers
    # as computed; {start}: the first day of the period; {period}: a word below).
    "report_alert_above": {"en": "{label}: {value} is above {threshold}",
                           "zh": "{label}：当前值{value}，高于{threshold}"},
    "report_alert_below": {"en": "{label}: {value} is below {threshold}",
                           "zh": "{label}：当前值{value}，低于{threshold}"},
    "report_alert_down": {"en": "{label}: {value} in the {period} from {start}, down "
                                "{percent}% from {previous}",
                          "zh": "{label}：{start}起的一{period}为{value}，比前一{period}的"
                                "{previous}下降{percent}%"},
    "report_alert_up": {"en": "{label}: {value} in the {period} from {start}, up "
                              "{percent}% from {previous}",
                        "zh": "{label}：{start}起的一{period}为{value}，比前一{period}的"
                              "{previous}上升{percent}%"},
    # The period words of report_alert_down/up (Chinese counts with them: 一个月, 前一个月).
    "report_alert_day": {"en": "day", "zh": "天"},
    "report_alert_week": {"en": "week", "zh": "周"},
    "report_alert_month": {"en": "month", "zh": "个月"},
    "report_alert_quarter": {"en": "quarter", "zh": "个季度"},
    "report_alert_year": {"en": "year", "zh": "年"},
}


def text(code: str, language: str, **params: Any) -> str:
    """Text ``code`` of :data:`TEXTS` in ``language`` (else English)."""
    return _pick(TEXTS[code], language).format(**params)


def _pick(entry: dict[str, str], language: str) -> str:
    """The text of ``entry`` for ``language`` (``zh-CN`` reads ``zh``), else English."""
    return entry.get(language) or entry.get(language.split("-")[0]) or entry["en"]
