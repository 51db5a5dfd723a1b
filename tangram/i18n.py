"""Localized messages for error codes. One catalog; engines pass code + params,
and the message is rendered in the caller's language."""

from __future__ import annotations

from dataclasses import dataclass
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


# Messages of errors people meet in daily work (keys are not error codes):
# raised as ``TangramError(Msg(key, ...))`` (tangram/errors.py), so the one
# HTTP error handler says them in the caller's language; the English text is
# the error's ``message``.
ERROR_MESSAGES: dict[str, dict[str, str]] = {
    # Signing in (before sign-in nothing is known about the caller but the request).
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
    "csrf_cross_site": {"en": "cross-site request refused: it comes from {sent}, not {own}",
                        "zh": "已拒绝跨站请求：请求来自 {sent}，而不是 {own}"},
    "csrf_header": {"en": "a cookie-authenticated {method} needs the {header} header (send "
                          "Authorization: Bearer instead from scripts)",
                    "zh": "通过 Cookie 登录的 {method} 请求需要 {header} 请求头（脚本请改用 "
                          "Authorization: Bearer）"},
    # Permissions.
    "admin_required": {"en": "Only administrators may do this.",
                       "zh": "只有管理员可以执行此操作。"},
    "builder_required": {"en": "only administrators and builders of app {app!r} may edit its "
                               "definitions",
                         "zh": "只有管理员和应用“{app}”的搭建者可以修改其定义"},
    "api_token_not_here": {"en": "API tokens only reach records; sign in to manage the "
                                 "platform",
                           "zh": "API 令牌只能访问记录；管理平台请登录后操作"},
    "field_hidden_set": {"en": "you may not set field {field!r} ({label}): it is hidden from "
                               "you",
                         "zh": "您无权填写字段“{label}”：该字段对您不可见"},
    "field_read_only_set": {"en": "you may not set field {field!r} ({label}): it is read-only "
                                  "for you",
                            "zh": "您无权修改字段“{label}”：该字段对您只读"},
    "field_hidden_read": {"en": "field {field!r} is hidden from you: you may not read, filter "
                                "or sort on it",
                          "zh": "字段“{field}”对您不可见，不能查看、筛选或排序"},
    "field_fixed": {"en": "field {field!r} is read-only: nobody sets it by hand",
                    "zh": "字段“{field}”为只读，不能手动填写"},
    "nothing_to_pick": {"en": "you may neither create nor update records of form {form!r}, so "
                              "there is nothing to pick",
                        "zh": "您没有新建或修改此表单记录的权限，无法选择"},
    # Roles (the refusals people meet most).
    "form_action_denied": {"en": "you may not {action} records of form {form!r} in app {app!r}: "
                                 "none of your roles allows it",
                           "zh": "您的角色没有{action}此表单记录的权限"},
    "record_action_denied": {"en": "you may see record {record} of form {form!r} but not "
                                   "{action} it",
                             "zh": "您可以查看此记录，但没有{action}它的权限"},
    **{f"action_{action}": {"en": action, "zh": zh} for action, zh in (
        ("read", "查看"), ("create", "新建"), ("update", "修改"), ("delete", "删除"),
        ("restore", "恢复"), ("export", "导出"), ("import", "导入"), ("print", "打印"),
        ("submit", "提交审批"), ("approve", "审批"))},
    # Records.
    "record_missing": {"en": "record {record} of form {form!r} does not exist",
                       "zh": "记录不存在或已被删除"},
    "record_missing_deleted": {"en": "record {record} of form {form!r} does not exist in the "
                                     "recycle bin",
                               "zh": "回收站中没有此记录"},
    "record_id_invalid": {"en": "{value!r} is not a record id",
                          "zh": "“{value}”不是有效的记录 ID"},
    "record_stale": {"en": "record {record} was changed by someone else (it is at version "
                           "{current}, your copy is version {yours}); reload and retry",
                     "zh": "记录已被他人修改，请刷新后重试"},
    "record_changed": {"en": "record {record} was changed by someone else; reload and retry",
                       "zh": "记录已被他人修改，请刷新后重试"},
    "record_locked_delete": {"en": "record {record} is locked and cannot be deleted{reason}",
                             "zh": "记录已锁定，不能删除{reason}"},
    "record_locked_change": {"en": "record {record} is locked and cannot be changed "
                                   "({fields}){reason}",
                             "zh": "记录已锁定，不能修改（{fields}）{reason}"},
    "delete_restricted": {"en": "cannot delete: {count} {form} record(s) link to it through "
                                "{field!r} (on delete: restrict)",
                          "zh": "无法删除：有 {count} 条{form}记录通过“{field_label}”关联到此记录"},
    # ": <reason>" after a sentence that has one.
    "reason_suffix": {"en": ": {reason}", "zh": "：{reason}"},
    # Flow tasks and requests ({node}: the node's label in Chinese, its key in English).
    "task_missing": {"en": "task {task} does not exist", "zh": "任务不存在"},
    "task_action_unknown": {"en": "no task action {action!r}; task actions: {allowed}",
                            "zh": "没有“{action}”这个任务操作，可用的操作：{allowed}"},
    "instance_action_unknown": {"en": "no instance action {action!r}; use {allowed}",
                                "zh": "没有“{action}”这个申请操作，可用的操作：{allowed}"},
    "task_not_yours": {"en": "this task is assigned to someone else",
                       "zh": "该任务已分配给他人，您无权处理"},
    "task_is_cc": {"en": "a CC is for information; it has no actions",
                   "zh": "抄送仅供知悉，无需处理"},
    "task_stale": {"en": "the task changed since you read it (version {current}, yours "
                         "{yours}); reload it",
                   "zh": "任务已发生变化，请刷新后重试"},
    "task_race": {"en": "someone else acted on this task at the same moment; reload it",
                  "zh": "该任务刚被他人处理，请刷新后查看"},
    "task_cancelled": {"en": "this task is closed: the step was completed by another decision",
                       "zh": "该任务已关闭：此环节已由他人处理完毕"},
    "task_queued": {"en": "this task is not yet yours to decide: it waits for an earlier "
                          "signer",
                    "zh": "还未轮到您处理：需等待前一位审批人"},
    "task_decided": {"en": "this task was already decided ({status})",
                     "zh": "该任务已被处理（{status}）"},
    "request_closed": {"en": "the request is already {status}", "zh": "该申请已结束（{status}）"},
    "request_closed_outcome": {"en": "the request is already {status} ({outcome})",
                               "zh": "该申请已结束（{status}，结果：{outcome}）"},
    "no_open_task": {"en": "you have no open task in this request",
                     "zh": "您在此申请中没有待处理的任务"},
    "action_not_allowed": {"en": "action {action!r} is not allowed at node {node!r}; allowed: "
                                 "{allowed}",
                           "zh": "「{node}」环节不能执行“{action}”，可用的操作：{allowed}"},
    "submitter_only": {"en": "only the submitter may {action} this request",
                       "zh": "只有提交人可以{action}此申请"},
    "comment_involved_only": {"en": "only people involved in this request may comment",
                              "zh": "只有此申请的参与人可以评论"},
    "comment_required": {"en": "a comment needs text", "zh": "请填写评论内容"},
    "withdraw_after_action": {"en": "this request cannot be withdrawn: an approver already "
                                    "acted at node {node!r}",
                              "zh": "审批人已在「{node}」环节处理，无法撤回"},
    "withdraw_refused": {"en": "this request cannot be withdrawn: {reason}",
                         "zh": "无法撤回此申请：{reason}"},
    "task_users_one": {"en": "{action} needs one active user (usernames or ids); got {users!r}",
                       "zh": "{action}需要指定一位有效用户（用户名或 ID）"},
    "task_users_many": {"en": "{action} needs active users (usernames or ids); got {users!r}",
                        "zh": "{action}需要指定有效用户（用户名或 ID）"},
    "transfer_to_self": {"en": "you cannot transfer a task to yourself; name someone else",
                         "zh": "不能转交给自己，请选择其他人"},
    "transfer_has_task": {"en": "{user} already has a task at node {node!r}; transfer it to "
                                "someone who has none",
                          "zh": "{user}在「{node}」环节已有任务，请转交给其他人"},
    "decider_is_submitter": {"en": "{user} submitted this request and may not decide it "
                                   "(nobody approves their own request); name someone else",
                             "zh": "{user}是此申请的提交人，不能审批自己的申请，请选择其他人"},
    "decider_refused": {"en": "{user} cannot decide this request: {reason}",
                        "zh": "{user}无权审批此申请：{reason}"},
    "approve_no_role": {"en": "none of their roles allows approve on form {form!r}",
                        "zh": "其角色没有表单“{form}”的审批权限"},
    "approve_out_of_scope": {"en": "this record is outside the scope in which their roles "
                                   "allow approve",
                             "zh": "此记录不在其角色可审批的范围内"},
    "return_nowhere": {"en": "there is no earlier approval to return this task to (reject it "
                             "instead)",
                       "zh": "没有可退回的前序审批环节，请改为拒绝"},
    "return_which": {"en": "say which earlier approval to return to (node): {allowed}",
                     "zh": "请指定要退回到的审批环节（node）：{allowed}"},
    "return_not_earlier": {"en": "node {node!r} is not an earlier approval of this flow; "
                                 "return to one of: {allowed}",
                           "zh": "“{node}”不是此流程的前序审批环节，可退回到：{allowed}"},
    "signer_position": {"en": "position is before or after",
                        "zh": "position 只能是 before 或 after"},
    "task_field_refused": {"en": "you may not set field {field!r} at node {node!r}: {reason}",
                           "zh": "您不能在「{node}」环节修改字段“{field}”：{reason}"},
    "task_fields_refused": {"en": "fields {fields} cannot be edited at node {node!r}; editable "
                                  "here: {editable}",
                            "zh": "「{node}」环节不能修改字段 {fields}；可修改的字段：{editable}"},
    "why_form_computes": {"en": "the form computes it", "zh": "该字段由表单自动计算"},
    "why_form_read_only": {"en": "the form makes it read-only", "zh": "表单将该字段设为只读"},
    "why_roles_hide": {"en": "your roles hide it from you", "zh": "您的角色看不到该字段"},
    "why_node_hides": {"en": "the node does not show it (it is not in its visible_fields)",
                       "zh": "此环节不显示该字段（不在 visible_fields 中）"},
    "why_roles_read_only": {"en": "your roles make it read-only for you",
                            "zh": "您的角色对该字段只读"},
    # Status words inside the messages above ({status}, {outcome}).
    "status_approved": {"en": "approved", "zh": "已同意"},
    "status_rejected": {"en": "rejected", "zh": "已拒绝"},
    "status_returned": {"en": "returned", "zh": "已退回"},
    "status_transferred": {"en": "transferred", "zh": "已转交"},
    "status_cancelled": {"en": "cancelled", "zh": "已取消"},
    "status_completed": {"en": "completed", "zh": "已完成"},
    "status_withdrawn": {"en": "withdrawn", "zh": "已撤回"},
    "status_failed": {"en": "failed", "zh": "已出错"},
    # Requests refused before any engine saw them.
    "rate_limited": {"en": "Too many attempts; try again later.",
                     "zh": "尝试次数过多，请稍后再试。"},
    "rate_limited_minutes": {"en": "Too many attempts; try again in {minutes} minute(s).",
                             "zh": "尝试次数过多，请 {minutes} 分钟后再试。"},
    "limit_exceeded": {"en": "Larger than allowed: {detail}", "zh": "内容超出大小上限：{detail}"},
    "request_invalid": {"en": "The request is not valid: {listed}{more}.",
                        "zh": "请求格式不正确：{listed}{more}。"},
    "request_invalid_more": {"en": " (and {count} more)", "zh": "（另有 {count} 处）"},
    "no_such_endpoint": {"en": "No such endpoint: {method} {path}.",
                         "zh": "没有这个接口：{method} {path}。"},
    "method_not_allowed": {"en": "{method} is not allowed on {path}.",
                           "zh": "{path} 不接受 {method} 请求。"},
    "internal_error": {"en": "The server failed to handle this request; the error has been "
                             "logged.",
                       "zh": "服务器处理请求时出错，错误已记录。"},
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
    return _format(entry, language, params)


def _format(entry: dict[str, str], language: str, params: dict[str, Any]) -> str:
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


@dataclass(frozen=True, init=False)
class Msg:
    """A message of :data:`ERROR_MESSAGES` (or :data:`MESSAGES`) not rendered
    yet — its key and params — so that an error can be said in the language of
    whoever reads it::

        Msg("task_decided", status=Msg("status_approved")).render("zh")
        # '该任务已被处理（已同意）'

    A param that is a ``Msg`` (a word such as a status) or a localized map
    (``{"zh": "经理审批", "en": "'manager'"}``, e.g. a label) is rendered in
    the same language; any other value is formatted as it is."""

    key: str
    params: dict[str, Any]

    def __init__(self, key: str, /, **params: Any) -> None:
        if key not in ERROR_MESSAGES and key not in MESSAGES:
            # a typo fails where the error is raised, in tests
            raise KeyError(f"no message {key!r} in tangram.i18n")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "params", params)

    def render(self, language: str) -> str:
        return _format(ERROR_MESSAGES.get(self.key) or MESSAGES[self.key], language,
                       {k: _render_param(v, language) for k, v in self.params.items()})


def _render_param(value: Any, language: str) -> Any:
    if isinstance(value, Msg):
        return value.render(language)
    if isinstance(value, dict):
        return (value.get(language) or value.get(language.split("-")[0]) or value.get("en")
                or next(iter(value.values()), ""))
    return value


def action_word(action: str) -> Msg | str:
    """A role action (``update``, ``export``…) as a word to translate."""
    key = f"action_{action}"
    return Msg(key) if key in ERROR_MESSAGES else action


def status_word(status: str) -> Msg | str:
    """A flow status or outcome (``approved``, ``withdrawn``…) as a word to
    translate; an outcome the catalog does not know (a flow's own) as it is."""
    key = f"status_{status}"
    return Msg(key) if key in ERROR_MESSAGES else status


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
