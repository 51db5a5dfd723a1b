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
from typing import Annotated, Any, Literal, get_args
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

    kind: Literal["user"] = "user"
    users: list[str] = Field(min_length=1, max_length=200)


class RoleAssignee(Definition):
    """Every holder of an app role (directly or through their department)."""

    kind: Literal["role"] = "role"
    role: Key


class DepartmentHeadAssignee(Definition):
    """The head of the submitter's department (``levels`` 1), of its parent
    (2), …; or of the department of a user/department field (``of``)."""

    kind: Literal["department_head"] = "department_head"
    levels: int = Field(1, ge=1, le=10)
    of: Key | None = Field(None, description="A user or department field of the record; "
                           "default: the submitter.")


class FieldAssignee(Definition):
    """The user(s) in a user field of the record (or ``owner`` / ``created_by``)."""

    kind: Literal["field"] = "field"
    field: Key


class SubmitterAssignee(Definition):
    """Whoever started the instance."""

    kind: Literal["submitter"] = "submitter"


class ExpressionAssignee(Definition):
    """An expression giving a username, user id or a list of them."""

    kind: Literal["expression"] = "expression"
    expression: Expression


class DepartmentMembersAssignee(Definition):
    """The active members of departments (and of the departments below them),
    optionally only those holding an app role — e.g. the east region's sales
    reps."""

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
    kind: Literal["record_created"] = "record_created"
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class RecordUpdatedTrigger(Definition):
    kind: Literal["record_updated"] = "record_updated"
    fields: list[Key] = Field(default_factory=list, description="Only when one of these "
                              "fields changed (default: any change).")
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class RecordDeletedTrigger(Definition):
    kind: Literal["record_deleted"] = "record_deleted"
    condition: Expression | None = None
    sources: list[ChangeSource] | None = _sources_field()


class SubmittedTrigger(Definition):
    """A user submits a record for approval (``POST …/flows/{flow}/start``)."""

    kind: Literal["submitted"] = "submitted"
    condition: Expression | None = None
    refusal: Label | None = Field(None, description=(
        "Why a record that does not meet the condition cannot be submitted, as its "
        "user reads it (default: the platform's message)."))


class ScheduleTrigger(Definition):
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
    kind: Literal["manual"] = "manual"


class WebhookTrigger(Definition):
    """``POST /api/hooks/flows/{app}/{flow}`` with the token shown at publish."""

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
    return [text] if isinstance(text, str) else list(text.values())


class RemindAction(Definition):
    kind: Literal["remind"] = "remind"
    message: Body | None = Field(None, description="The reminder's text (default: the "
                                 "platform's, in the recipient's language).")


class EscalateAction(Definition):
    """Give the open task(s) to someone else too (or instead, ``replace``)."""

    kind: Literal["escalate"] = "escalate"
    to: list[AssigneeRule] = Field(min_length=1)
    replace: bool = False


class AutoDecideAction(Definition):
    kind: Literal["auto_decide"] = "auto_decide"
    decision: Literal["approve", "reject"]


class TakePathAction(Definition):
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

    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1, max_length=2000, description="A template (jinja).")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(None, max_length=20_000, description="A template (jinja).")
    retries: int = Field(3, ge=0, le=20)
    backoff_seconds: int = Field(30, ge=1, le=86_400)
    timeout_seconds: int = Field(10, ge=1, le=120)


class StartFlowAction(Definition):
    kind: Literal["start_flow"] = "start_flow"
    flow: Key
    same_record: bool = True


class AssignOwnerAction(Definition):
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
    type: Literal["start"] = "start"
    trigger: AnyTrigger
    next: Key


ApprovalActionName = Literal["approve", "reject", "return", "transfer", "add_signer", "cc",
                             "comment"]
APPROVAL_ACTIONS: tuple[ApprovalActionName, ...] = get_args(ApprovalActionName)


class ApprovalNode(NodeBase):
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
    type: Literal["branch"] = "branch"
    conditions: list[BranchCondition] = Field(min_length=1)
    default: Key | None = None
    require_match: bool = Field(False, description="Publish without a default; a record "
                                "no condition matches fails its instance (visibly).")


class ParallelSplitNode(NodeBase):
    type: Literal["parallel_split"] = "parallel_split"
    branches: list[Key] = Field(min_length=2)


class ParallelJoinNode(NodeBase):
    type: Literal["parallel_join"] = "parallel_join"
    split: Key = Field(description="The parallel_split this join closes.")
    mode: Literal["all", "first_n"] = "all"
    n: int = Field(1, ge=1)
    next: Key


class DelayNode(NodeBase):
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
    type: Literal["action"] = "action"
    action: AnyAction
    next: Key


class EndNode(NodeBase):
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
