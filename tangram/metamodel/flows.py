"""Flow definitions: a graph of nodes (start, approval, branch, parallel
split/join, delay, action, end) stored as JSON and versioned like every
definition.

Each node kind, trigger kind, assignee rule, action kind and timeout action is
one pydantic model in a discriminated union; the engine keeps one registry
entry per kind (``tangram.engines.flows.registry``) read by validation,
execution, the metadata endpoint and ``docs/flows.md``.

    {"key": "contract_approval", "label": {"zh": "合同审批"}, "form": "contract",
     "nodes": [
       {"type": "start", "key": "start", "trigger": {"kind": "submitted"}, "next": "manager"},
       {"type": "approval", "key": "manager", "label": {"zh": "经理审批"},
        "assignees": [{"kind": "department_head", "levels": 1}], "next": "done"},
       {"type": "end", "key": "done", "outcome": "approved"}]}
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from tangram.metamodel.common import Definition, Expression, Key, Label
from tangram.metamodel.storage import register_kind

# --- shared pieces -------------------------------------------------------------


class Duration(Definition):
    """A length of time; in working time, ``days`` are working days and hours
    and minutes count only working hours."""

    days: int = Field(0, ge=0, le=3650)
    hours: int = Field(0, ge=0, le=100_000)
    minutes: int = Field(0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        if not (self.days or self.hours or self.minutes):
            raise ValueError("a duration needs days, hours or minutes, e.g. {\"hours\": 24}")
        return self

    def as_timedelta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


# --- assignee rules --------------------------------------------------------------


class UserAssignee(Definition):
    """Named users (usernames or user ids)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Named users, by username or user id.",
        "zh": "指定成员（用户名或用户 ID）。"}
    kind: Literal["user"] = "user"
    users: list[str] = Field(min_length=1, max_length=200)


class RoleAssignee(Definition):
    """Every holder of an app role (directly or through their department)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Every holder of an app role, directly or through their department.",
        "zh": "应用角色的所有成员（直接授予或通过所在部门）。"}
    kind: Literal["role"] = "role"
    role: Key


class DepartmentHeadAssignee(Definition):
    """The head of the submitter's department (``levels`` 1), of its parent
    (2), …; or of the department of a user/department field (``of``)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "The submitter's manager up the department chain (levels 1, 2 and so on), or the "
              "manager of a user or department field.",
        "zh": "发起人所在部门链上的负责人（第 1、2 级等），或某个成员、部门字段对应的负责人。"}
    kind: Literal["department_head"] = "department_head"
    levels: int = Field(1, ge=1, le=10)
    of: Key | None = Field(None, description="A user or department field of the record; "
                           "default: the submitter.")


class FieldAssignee(Definition):
    """The user(s) in a user field of the record (or ``owner`` / ``created_by``)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "The users in a user field of the record, or its owner or creator.",
        "zh": "记录中成员字段里的用户，或记录的负责人、创建人。"}
    kind: Literal["field"] = "field"
    field: Key


class SubmitterAssignee(Definition):
    """Whoever started the instance."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Whoever started the instance.",
        "zh": "流程发起人。"}
    kind: Literal["submitter"] = "submitter"


class ExpressionAssignee(Definition):
    """An expression giving a username, user id or a list of them."""

    palette: ClassVar[dict[str, str]] = {
        "en": "An expression that gives a username, a user id or a list of them.",
        "zh": "返回用户名、用户 ID 或其列表的表达式。"}
    kind: Literal["expression"] = "expression"
    expression: Expression


class DepartmentMembersAssignee(Definition):
    """The active members of departments (and of the departments below them),
    optionally only those holding an app role — e.g. the east region's sales
    reps."""

    palette: ClassVar[dict[str, str]] = {
        "en": "The active members of departments (and of the departments below them), optionally "
              "only the holders of an app role.",
        "zh": "指定部门（及其下级部门）的在职成员，可限定为某个应用角色的成员。"}
    kind: Literal["department_members"] = "department_members"
    departments: list[str] = Field(min_length=1, max_length=50, description=(
        "Departments by external id (the id an org chart import or a package's "
        "org fixture gave them, e.g. \"east\") or by id. One that does not exist "
        "names nobody."))
    subtree: bool = Field(True, description="Include the departments below them.")
    role: Key | None = Field(None, description="Only holders of this app role.")


AssigneeRule = Annotated[
    UserAssignee | RoleAssignee | DepartmentHeadAssignee | FieldAssignee | SubmitterAssignee
    | ExpressionAssignee | DepartmentMembersAssignee,
    Field(discriminator="kind"),
]


# --- triggers ---------------------------------------------------------------------


# What made a record change (the ``source`` of its history entry); changes
# made by flows never start flows.
ChangeSource = Literal["api", "import", "history", "package", "public_form", "rollup",
                       "cascade", "set_null"]
CHANGE_SOURCES: tuple[str, ...] = get_args(ChangeSource)


def _sources_field() -> Any:
    return Field(None, min_length=1, description=(
        "Only changes from these sources start the flow (default: all but history): api "
        "(people, through the API and the UI), import (file imports), history (imports "
        "marked historical), package (package data), public_form, rollup, cascade, "
        "set_null. E.g. [\"api\", \"public_form\"] keeps rows loaded by an import or a "
        "package from starting it."))


class RecordCreatedTrigger(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Starts when a record of the form is created, if the optional condition holds.",
        "zh": "表单新建记录时发起（可设条件）。"}
    kind: Literal["record_created"] = "record_created"
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class RecordUpdatedTrigger(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Starts when a record is updated, optionally only when one of the given fields "
              "changed; the condition may compare with the old values.",
        "zh": "记录被修改时发起，可限定仅在指定字段变化时发起；条件中可读取修改前的值。"}
    kind: Literal["record_updated"] = "record_updated"
    fields: list[Key] = Field(default_factory=list, description="Only when one of these "
                              "fields changed (default: any change).")
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class RecordDeletedTrigger(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Starts when a record of the form is deleted.",
        "zh": "表单记录被删除时发起。"}
    kind: Literal["record_deleted"] = "record_deleted"
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class SubmittedTrigger(Definition):
    """A user submits a record for approval (``POST …/flows/{flow}/start``)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Starts when a user submits a record for approval.",
        "zh": "用户提交记录审批时发起。"}
    kind: Literal["submitted"] = "submitted"
    condition: Expression | None = None
    refusal: Label | None = Field(None, description=(
        "Why a record that does not meet the condition cannot be submitted, as its "
        "user reads it (default: the platform's message)."))


class ScheduleTrigger(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Starts on a schedule written as a five-field cron expression, in the "
              "organization's time zone or another one.",
        "zh": "按五段式 cron 表达式定时发起，使用组织时区或指定的时区。"}
    kind: Literal["schedule"] = "schedule"
    cron: str = Field(min_length=9, max_length=100, description="Five-field cron, e.g. "
                      "\"0 9 * * 1-5\" (09:00 on weekdays).")
    timezone: str | None = Field(None, description="Default: the organization's zone.")
    missed: Literal["run_once", "skip"] = Field(
        "run_once", description="Ticks missed while no worker ran: run once on recovery, or "
        "skip them. Never a burst.")


class DateRelativeTrigger(Definition):
    """Starts one instance per record whose date field (plus ``offset_days``)
    is today, at ``at`` o'clock; ``yearly`` matches month and day (birthdays)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Starts once for each record whose date field, plus an offset in days, is today, at "
              "a set time of day; yearly for birthdays and anniversaries.",
        "zh": "记录的日期字段加上偏移天数等于今天时，在指定时刻为每条记录发起一次；可按年重复（"
              "生日、纪念日）。"}
    kind: Literal["date_relative"] = "date_relative"
    field: Key
    offset_days: int = Field(0, ge=-366, le=366, description="-3 = three days before.")
    yearly: bool = False
    at: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    condition: Expression | None = None
    missed: Literal["run_once", "skip"] = Field(
        "run_once", description="Days missed while no worker ran: on recovery, start "
        "once for each record a missed day matched (up to 31 days back), or skip them.")


class ManualTrigger(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "A user starts it by hand, optionally with variables.",
        "zh": "由用户手动发起，可带变量。"}
    kind: Literal["manual"] = "manual"


class WebhookTrigger(Definition):
    """``POST /api/hooks/flows/{app}/{flow}`` with the token shown at publish."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Starts when another system posts to the flow's webhook address with its token.",
        "zh": "外部系统携带令牌调用流程的 Webhook 地址时发起。"}
    kind: Literal["webhook"] = "webhook"


AnyTrigger = Annotated[
    RecordCreatedTrigger | RecordUpdatedTrigger | RecordDeletedTrigger | SubmittedTrigger
    | ScheduleTrigger | DateRelativeTrigger | ManualTrigger | WebhookTrigger,
    Field(discriminator="kind"),
]


# --- timeouts ----------------------------------------------------------------------


# A text users read (a notification's title or body): one template, or one
# per language ({"zh": …, "en": …}) — each recipient reads their language's.
Title = Annotated[str, Field(min_length=1, max_length=300)] | Label
Body = Annotated[str, Field(max_length=4000)] | Label


def texts_of(text: str | dict[str, str] | None) -> list[str]:
    """The template(s) of a text, to check each."""
    if text is None:
        return []
    # By language, so that a check reports them in one order however the
    # body was written.
    return [text] if isinstance(text, str) else [text[k] for k in sorted(text)]


class RemindAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Reminds the assignees of open tasks, with an optional message.",
        "zh": "提醒尚未处理的审批人，可附提醒内容。"}
    kind: Literal["remind"] = "remind"
    message: Body | None = Field(None, description="The reminder's text (default: the "
                                 "platform's, in the recipient's language).")


class EscalateAction(Definition):
    """Give the open task(s) to someone else too (or instead, ``replace``)."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Gives the open tasks to other users as well, or instead.",
        "zh": "把未处理的待办同时交给（或改为交给）其他人。"}
    kind: Literal["escalate"] = "escalate"
    to: list[AssigneeRule] = Field(min_length=1)
    replace: bool = False


class AutoDecideAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Approves or rejects automatically.",
        "zh": "自动同意或拒绝。"}
    kind: Literal["auto_decide"] = "auto_decide"
    decision: Literal["approve", "reject"]


class TakePathAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Leaves the node towards another node.",
        "zh": "离开当前节点，转到另一个节点。"}
    kind: Literal["take_path"] = "take_path"
    next: Key


TimeoutAction = Annotated[
    RemindAction | EscalateAction | AutoDecideAction | TakePathAction,
    Field(discriminator="kind"),
]


class TimeoutStage(Definition):
    after: Duration
    time: Literal["calendar", "working"] = "calendar"
    calendar: Key | None = Field(None, description="A business calendar of the app (kind "
                                 "\"calendar\"); default: Mon–Fri 09:00–12:00, 13:00–18:00.")
    actions: list[TimeoutAction] = Field(min_length=1)


# --- actions -----------------------------------------------------------------------


class SelfTarget(Definition):
    """The flow's own record."""

    kind: Literal["self"] = "self"


class RelatedTarget(Definition):
    """The record a relation field of the flow's record points to — or a path
    of relation fields, ``opportunity.account``. Nothing is updated when a
    field on the way is empty."""

    kind: Literal["related"] = "related"
    path: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,3}$",
                      description="Relation fields from the flow's record, dot-separated.")


class FilterTarget(Definition):
    """Records of a form of the same app whose fields equal the given
    expressions (``{"account": "record.account"}``); at most ``limit`` of them,
    oldest first. ``id`` and ``owner`` may be used as fields too."""

    kind: Literal["filter"] = "filter"
    form: Key
    where: dict[Key, Expression] = Field(min_length=1, max_length=10)
    limit: int = Field(100, ge=1, le=1000)


RecordTarget = Annotated[SelfTarget | RelatedTarget | FilterTarget, Field(discriminator="kind")]


class OwnerChange(Definition):
    """Clear the owner (``clear: true``, e.g. back to the public pool) or give
    the record to the first active user the rules find."""

    clear: bool = False
    to: list[AssigneeRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self) -> OwnerChange:
        if self.clear == bool(self.to):
            raise ValueError("owner: give either clear: true or the rules in to")
        return self


class UpdateRecordAction(Definition):
    """Update the flow's record, a related record or records found by a filter,
    through the form engine (validation, audit, record events) as the system."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Updates the flow's record, a related record or records found by a filter: sets "
              "values, computes values, clears fields or changes the owner.",
        "zh": "更新流程记录、关联记录或按条件找到的记录：设置值、计算值、清空字段或更改负责人。"}
    kind: Literal["update_record"] = "update_record"
    target: RecordTarget = Field(default_factory=SelfTarget,
                                 description="Which records (default: the flow's own).")
    values: dict[Key, Any] = Field(default_factory=dict, description="Literal values.")
    expressions: dict[Key, Expression] = Field(
        default_factory=dict, description="Computed values (``record`` is the flow's record).")
    clear: list[Key] = Field(default_factory=list, description="Fields to empty.")
    owner: OwnerChange | None = Field(None, description="Clear or reassign the owner.")

    @model_validator(mode="after")
    def _something(self) -> UpdateRecordAction:
        if not (self.values or self.expressions or self.clear or self.owner):
            raise ValueError("update_record changes nothing: give values, expressions, "
                             "clear or owner")
        both = (set(self.values) | set(self.expressions)) & set(self.clear)
        if both:
            raise ValueError(f"fields both set and cleared: {', '.join(sorted(both))}")
        return self


class CreateRecordAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Creates a record in a form of the app (or finds an existing one) and keeps its id "
              "for the next steps.",
        "zh": "在应用的表单中新建记录（或使用已有记录），并保存其 ID 供后续步骤使用。"}
    kind: Literal["create_record"] = "create_record"
    form: Key
    values: dict[Key, Any] = Field(default_factory=dict)
    expressions: dict[Key, Expression] = Field(default_factory=dict)
    owner: list[AssigneeRule] = Field(default_factory=list, description=(
        "The new record's owner: the first active user the rules find (e.g. the owner "
        "of the flow's record); default: who started the flow."))
    save_as: Key | None = Field(None, description=(
        "Keep the new record's id in vars.<save_as> for the nodes after (a contact "
        "linked to the account just created: {\"account\": \"vars.account\"})."))
    unless_exists: dict[Key, Expression] = Field(default_factory=dict, description=(
        "Find or create: when a live record of the form has these fields equal to these "
        "expressions (e.g. {\"name\": \"record.company\"}), use it — its id for save_as "
        "— instead of creating one."))


class NotifyAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Sends a notification to the users the rules find, and to group chat robots.",
        "zh": "向按规则找到的成员发送通知，也可发送到群机器人。"}
    kind: Literal["notify"] = "notify"
    to: list[AssigneeRule] = Field(min_length=1)
    title: Title = Field(description=(
        "A template (jinja), or one per language: {\"zh\": …, \"en\": …}."))
    body: Body = ""
    channels: list[str] = Field(default_factory=list, description=(
        "Keys of group channels (DingTalk or WeCom robots) that also get the message; "
        "see docs/notifications.md."))


class HttpAction(Definition):
    """An HTTP call run by the worker, with an ``Idempotency-Key`` header
    derived from the instance and step, retried with backoff."""

    palette: ClassVar[dict[str, str]] = {
        "en": "Calls a URL from the worker, with an idempotency key, retrying with backoff when "
              "it fails.",
        "zh": "由后台任务调用接口，带幂等键，失败时退避重试。"}
    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1, max_length=2000, description="A template (jinja).")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(None, max_length=20_000, description="A template (jinja).")
    retries: int = Field(3, ge=0, le=20)
    backoff_seconds: int = Field(30, ge=1, le=86_400)
    timeout_seconds: int = Field(10, ge=1, le=120)


class StartFlowAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Starts another flow, on the same record or without one.",
        "zh": "发起另一个流程（针对同一条记录或不关联记录）。"}
    kind: Literal["start_flow"] = "start_flow"
    flow: Key
    same_record: bool = True


class AssignOwnerAction(Definition):
    palette: ClassVar[dict[str, str]] = {
        "en": "Gives the record to one of the users the rules find, in turn or to whoever has the "
              "fewest records.",
        "zh": "把记录分配给规则找到的成员之一：轮流分配，或分给记录最少的人。"}
    kind: Literal["assign_owner"] = "assign_owner"
    users: list[AssigneeRule] = Field(min_length=1)
    fallback: list[AssigneeRule] = Field(default_factory=list, description=(
        "Who to choose from when ``users`` finds nobody (a region without a team "
        "yet); with neither, the instance fails visibly."))
    strategy: Literal["round_robin", "load_balanced"] = "round_robin"
    notify: bool = True


AnyAction = Annotated[
    UpdateRecordAction | CreateRecordAction | NotifyAction | HttpAction | StartFlowAction
    | AssignOwnerAction,
    Field(discriminator="kind"),
]


# --- nodes -------------------------------------------------------------------------


class NodeBase(Definition):
    key: Key
    label: Label | None = None


class StartNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Where an instance begins. Exactly one per flow; its trigger says when an instance "
              "starts.",
        "zh": "流程实例的起点。每个流程只有一个，由触发方式决定何时发起实例。"}
    type: Literal["start"] = "start"
    trigger: AnyTrigger
    next: Key


ApprovalActionName = Literal["approve", "reject", "return", "transfer", "add_signer", "cc",
                             "comment"]
APPROVAL_ACTIONS: tuple[ApprovalActionName, ...] = get_args(ApprovalActionName)
# What each task action does, as the designer's palette shows it (plain text,
# one per language). Withdraw and urge are the submitter's, on the instance.
TASK_ACTION_DOCS: dict[str, dict[str, str]] = {
    "approve": {"en": "Approves, with changes to the fields the node makes editable.",
                "zh": "同意，可修改节点允许编辑的字段。"},
    "reject": {"en": "Rejects: the node takes its rejection path.",
               "zh": "拒绝：节点走拒绝路径。"},
    "return": {"en": "Sends the request back to an earlier approval node.",
               "zh": "退回到之前经过的审批节点。"},
    "transfer": {"en": "Gives this task to another user.", "zh": "把这条待办转交给其他人。"},
    "add_signer": {"en": "Asks other users to decide before or after you.",
                   "zh": "加签：请其他人在你之前或之后审批。"},
    "cc": {"en": "Sends a copy to other users.", "zh": "抄送给其他人。"},
    "comment": {"en": "Adds a comment to the history.", "zh": "在流程记录中添加评论。"},
    "withdraw": {"en": "The submitter takes the request back, before any approver acted.",
                 "zh": "发起人撤回申请（在任何审批人处理之前）。"},
    "urge": {"en": "The submitter reminds the current approvers.",
             "zh": "发起人催促当前审批人。"},
}


class ApprovalNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Creates tasks for the assignees and waits for their decisions: any one of them, "
              "all of them, or one after another.",
        "zh": "为审批人创建待办并等待其决定：或签、会签或依次审批。"}
    type: Literal["approval"] = "approval"
    assignees: list[AssigneeRule] = Field(min_length=1)
    mode: Literal["any", "all", "sequence"] = Field(
        "any", description="any-one (或签), all (会签) or one after another.")
    next: Key
    on_reject: Key | None = Field(None, description="Where a rejection goes; default: the "
                                  "instance ends with outcome \"rejected\".")
    on_empty: Literal["auto_approve", "admin", "fail"] = Field(
        "admin", description="No assignee found: approve automatically, give the task to "
        "the administrators, or fail the instance.")
    actions: list[ApprovalActionName] = Field(
        default_factory=lambda: list(APPROVAL_ACTIONS),
        description="The actions an assignee may take at this node.")
    cc: list[AssigneeRule] = Field(default_factory=list, description="Copied on entry.")
    visible_fields: list[Key] | None = Field(None, description="Default: all fields.")
    editable_fields: list[Key] = Field(default_factory=list)
    timeouts: list[TimeoutStage] = Field(default_factory=list)


class BranchCondition(Definition):
    when: Expression
    next: Key
    label: Label | None = None


class BranchNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Takes the path of the first condition that is true, else the default path.",
        "zh": "走第一个条件成立的路径，都不成立时走默认路径。"}
    type: Literal["branch"] = "branch"
    conditions: list[BranchCondition] = Field(min_length=1)
    default: Key | None = None
    require_match: bool = Field(False, description="Publish without a default; a record "
                                "no condition matches fails its instance (visibly).")


class ParallelSplitNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Runs every branch at the same time.",
        "zh": "同时执行所有分支。"}
    type: Literal["parallel_split"] = "parallel_split"
    branches: list[Key] = Field(min_length=2)


class ParallelJoinNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Waits for the branches of its split (all of them, or the first n) and goes on once.",
        "zh": "等待对应并行分支的各条分支（全部或前 n 条）到达后继续，只继续一次。"}
    type: Literal["parallel_join"] = "parallel_join"
    split: Key = Field(description="The parallel_split this join closes.")
    mode: Literal["all", "first_n"] = "all"
    n: int = Field(1, ge=1)
    next: Key


class DelayNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Waits for a duration (calendar or working time) or until a date.",
        "zh": "等待一段时间（自然时间或工作时间），或等到某个日期。"}
    type: Literal["delay"] = "delay"
    duration: Duration | None = None
    until: Expression | None = Field(None, description="A date or datetime expression.")
    time: Literal["calendar", "working"] = "calendar"
    calendar: Key | None = None
    next: Key

    @model_validator(mode="after")
    def _one_of(self) -> DelayNode:
        if (self.duration is None) == (self.until is None):
            raise ValueError(f"node {self.key!r}: a delay needs exactly one of duration or "
                             "until")
        return self


class ActionNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Does one thing automatically (update or create a record, notify, call a URL, start "
              "a flow, assign the owner) and goes on.",
        "zh": "自动执行一项操作（更新或新建记录、发送通知、调用接口、发起流程、分配负责人）后继"
              "续。"}
    type: Literal["action"] = "action"
    action: AnyAction
    next: Key


class EndNode(NodeBase):
    palette: ClassVar[dict[str, str]] = {
        "en": "Ends the instance with an outcome, such as approved or rejected.",
        "zh": "以某个结果（如已批准、已拒绝）结束流程实例。"}
    type: Literal["end"] = "end"
    outcome: str = Field("completed", pattern=r"^[a-z][a-z0-9_]{0,39}$")


AnyNode = Annotated[
    StartNode | ApprovalNode | BranchNode | ParallelSplitNode | ParallelJoinNode | DelayNode
    | ActionNode | EndNode,
    Field(discriminator="type"),
]


class Flow(Definition):
    key: Key
    label: Label
    description: Label | None = None
    form: Key | None = Field(None, description="The form whose records the flow is about.")
    allow_withdraw_after_action: bool = False
    on_withdraw: list[AnyAction] = Field(
        default_factory=list, max_length=10,
        description="Actions run when the submitter withdraws (撤回) an instance, before it "
                    "ends — e.g. put the record back to draft: {\"kind\": \"update_record\", "
                    "\"values\": {\"status\": \"draft\"}}. They run in the withdraw "
                    "request (no http); one that fails refuses the withdrawal.")
    on_cancel: list[AnyAction] = Field(
        default_factory=list, max_length=10,
        description="Actions run when an administrator cancels a running or failed "
                    "instance, before it ends — as on_withdraw (no http); one that fails is "
                    "undone and named in the history, and the cancel goes on.")
    nodes: list[AnyNode] = Field(min_length=2)

    def node(self, key: str) -> Any:
        for n in self.nodes:
            if n.key == key:
                return n
        return None

    @property
    def start(self) -> StartNode | None:
        starts = [n for n in self.nodes if isinstance(n, StartNode)]
        return starts[0] if len(starts) == 1 else None


# --- business calendars -------------------------------------------------------------


class WorkPeriod(Definition):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")

    @model_validator(mode="after")
    def _ordered(self) -> WorkPeriod:
        if self.end <= self.start:
            raise ValueError(f"work period {self.start}-{self.end} ends before it starts")
        return self


def _calendar_day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _time_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as "
                             "'Asia/Shanghai')") from None
    return value


CalendarDay = Annotated[str, AfterValidator(_calendar_day)]


class BusinessCalendar(Definition):
    """Work hours, weekends, public holidays and make-up working days (调休)."""

    key: Key
    label: Label
    timezone: Annotated[str | None, AfterValidator(_time_zone)] = None
    work_hours: list[WorkPeriod] = Field(
        default_factory=lambda: [WorkPeriod(start="09:00", end="12:00"),
                                 WorkPeriod(start="13:00", end="18:00")], min_length=1)
    weekend: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [5, 6],
        description="ISO weekday numbers minus one: 5 = Sat, 6 = Sun.")
    holidays: list[CalendarDay] = Field(default_factory=list, description="Dates YYYY-MM-DD.")
    workdays: list[CalendarDay] = Field(default_factory=list, description="Make-up working "
                                        "days that fall on a weekend, YYYY-MM-DD.")


register_kind("flow", Flow)
register_kind("calendar", BusinessCalendar)
