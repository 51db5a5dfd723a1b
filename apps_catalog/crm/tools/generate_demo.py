"""Writes the CRM's demo company, ``data/demo/*.json`` — a developer tool of
this package, run by hand; not part of the package (the platform ignores
``tools/``) and not part of the platform:

    uv run python apps_catalog/crm/tools/generate_demo.py

A believable mid-size software vendor: 3 regions (华东, 华北, 华南) × 2
teams, 12 sales reps, 3 regional managers, a sales director, a finance, a
risk-control and a service user (password ``tangram-demo``, in ``_org.json``); 600 accounts with
contacts, 2,000 leads, 1,500 opportunities over 18 months that move through
the stages with realistic conversion (new business, upsell or renewal by the
account's earlier wins), contracts for the won ones, payment plans and
payments, and service tickets; each account's follow-ups (the last at its
last follow-up), and the day it went dormant if 90 days passed without one.

Deterministic (a fixed seed) and timeless: every date is relative to the day
the demo is installed (``{"$date": "-45d"}``), so the data is fresh on any
day; owners and creation times are the rows' ``$owner`` and ``$created_at``.
A test checks that the committed files are exactly this script's output —
change the script, run it, commit both.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

SEED = 20260101
PASSWORD = "tangram-demo"  # noqa: S105 - printed by ./run demo; demo data only
DAYS = 540  # 18 months of history
END = -1  # its last day: yesterday (today's working hours may be still to come)
COUNTS = {"account": 600, "lead": 2000, "opportunity": 1500, "ticket": 400}
REGIONS = {
    "east": ("华东大区", [("上海市", "上海市"), ("江苏省", "南京市"), ("江苏省", "苏州市"),
                        ("浙江省", "杭州市"), ("浙江省", "宁波市"), ("安徽省", "合肥市")]),
    "north": ("华北大区", [("北京市", "北京市"), ("天津市", "天津市"), ("河北省", "石家庄市"),
                         ("山东省", "济南市"), ("山东省", "青岛市"), ("山西省", "太原市")]),
    "south": ("华南大区", [("广东省", "广州市"), ("广东省", "深圳市"), ("广东省", "东莞市"),
                         ("福建省", "厦门市"), ("福建省", "福州市"), ("广西壮族自治区", "南宁市")]),
}
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
            "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段"
            "雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建红鹏飞斌波宇浩凯晨欣怡佳琪"
         "子涵梓轩雨泽思远博文嘉懿")
WORDS = ["华", "创", "科", "信", "达", "联", "鼎", "恒", "盛", "远", "通", "瑞", "博", "智", "云",
         "海", "金", "新", "正", "润", "天", "宏", "嘉", "德", "安", "成", "泰", "峰", "睿", "航"]
TRADES = ["科技", "电子", "精密制造", "汽车部件", "软件", "信息技术", "物流", "医疗器械",
          "生物医药", "新能源", "化工材料", "电商", "食品", "教育科技", "网络"]
SUFFIX = ["有限公司", "股份有限公司", "集团有限公司"]
LEAF_INDUSTRIES = ["auto_parts", "electronics", "machinery", "chemicals", "software", "internet",
                   "telecom", "banking", "insurance", "securities", "ecommerce", "fmcg",
                   "hospital", "pharma", "education", "logistics", "energy"]
SOURCES = [("expo", 14), ("website", 22), ("webinar", 10), ("ads", 16), ("social", 12),
           ("partner", 11), ("self", 15)]
SIZES = ["s0_50", "s50_200", "s200_500", "s500_2000", "s2000"]
STAGES = ["qualification", "discovery", "proposal", "negotiation"]
# Chance to move on from each open stage (the rest are lost, or still open if recent).
ADVANCE = {"qualification": 0.8, "discovery": 0.72, "proposal": 0.7, "negotiation": 0.68}
TITLES = {"decision_maker": ["总经理", "CIO", "副总裁"],
          "influencer": ["IT经理", "采购经理", "财务总监"],
          "user": ["销售主管", "运营专员", "客服主管"]}
PROJECTS = ["CRM 项目", "BI 平台", "私有化部署", "云服务采购", "系统升级"]
LOST_REASONS = [("price", 30), ("competitor", 25), ("no_budget", 15), ("product_fit", 12),
                ("no_decision", 12), ("relationship", 6)]
COMPETITORS = [None, "Salesforce", "纷享销客", "销售易", "自研系统", "Excel"]
PROBLEMS = ["无法登录", "报表导出缓慢", "数据同步失败", "需要新增字段", "接口调用报错", "培训需求"]
ROLES = {"director": "sales_director", "finance": "finance", "risk": "risk_control",
         "service": "service"}  # else by username prefix
DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def date(day: int) -> dict[str, str]:
    """A date ``day`` days from the install day (negative: before it)."""
    return {"$date": f"{day:+d}d"}


class Company:
    """Random but reproducible names, numbers and days; days are offsets
    from the install day (0), history from -DAYS to END."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED)  # noqa: S311 - reproducible demo data, not secrets
        self.used_names: set[str] = set()
        self.used_mobiles: set[str] = set()

    def person(self) -> str:
        r = self.rng
        return r.choice(SURNAMES) + "".join(r.choice(GIVEN) for _ in range(r.choice((1, 2))))

    def company(self, city: str) -> str:
        r = self.rng
        while True:
            name = (city.removesuffix("市") + "".join(r.sample(WORDS, 2)) + r.choice(TRADES)
                    + r.choice(SUFFIX))
            if name not in self.used_names:
                self.used_names.add(name)
                return name

    def mobile(self) -> str:
        while True:
            m = "1" + self.rng.choice("3456789") + "".join(self.rng.choice("0123456789")
                                                           for _ in range(9))
            if m not in self.used_mobiles:
                self.used_mobiles.add(m)
                return m

    def day(self, lo: int = -DAYS, hi: int = END) -> int:
        span = max(hi - lo, 0)
        # More activity in recent months: a growing business.
        return lo + int(span * (self.rng.random() ** 0.8))

    def at(self, day: int) -> dict[str, str]:
        """A moment of working hours (organization's time zone) on ``day``."""
        hour, minute = 9 + self.rng.randrange(10), self.rng.randrange(60)
        return {"$datetime": f"{day:+d}d {hour:02d}:{minute:02d}"}

    def amount(self, lo: int, hi: int) -> Decimal:
        value = min(max(self.rng.lognormvariate(12.2, 0.9), lo), hi)
        return Decimal(int(value / 1000) * 1000)


def people() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The org fixture (departments, users, role assignments) and the reps by region."""
    rng = random.Random(SEED + 1)  # noqa: S311 - reproducible demo data
    departments: list[dict[str, Any]] = [
        {"id": "sales", "parent_id": None, "name": "销售中心"},
        {"id": "finance", "parent_id": None, "name": "财务部"}]
    users: list[dict[str, Any]] = [
        {"id": "director", "name": "周总监", "department_ids": ["sales"], "is_head": ["sales"]},
        {"id": "finance", "name": "钱会计", "department_ids": ["finance"],
         "is_head": ["finance"]}]
    reps: dict[str, list[str]] = {}
    n = 0
    for region, (region_name, _) in REGIONS.items():
        departments.append({"id": region, "parent_id": "sales", "name": region_name})
        users.append({"id": f"mgr_{region}", "name": rng.choice(SURNAMES) + "经理",
                      "department_ids": [region], "is_head": [region]})
        for team in (1, 2):
            dept = f"{region}{team}"
            departments.append({"id": dept, "parent_id": region,
                                "name": f"{region_name[:2]}{'一二'[team - 1]}组"})
            for _ in range(2):
                n += 1
                rep = f"rep{n:02d}"
                users.append({"id": rep, "name": rng.choice(SURNAMES)
                              + "".join(rng.choice(GIVEN) for _ in range(2)),
                              "department_ids": [dept], "is_head": []})
                reps.setdefault(region, []).append(rep)
    # Risk control (large contracts' approval step) and service staff (tickets).
    departments += [{"id": "risk", "parent_id": None, "name": "风控部"},
                    {"id": "service", "parent_id": None, "name": "客服部"}]
    users += [{"id": "risk", "name": "郑风控", "department_ids": ["risk"], "is_head": ["risk"]},
              {"id": "service", "name": "林客服", "department_ids": ["service"],
               "is_head": ["service"]}]
    for i, user in enumerate(users):
        user["mobile"] = f"139{SEED % 10000:04d}{i + 1:04d}"
        user["password"] = PASSWORD
    roles: dict[str, list[str]] = {}
    for user in users:
        name = user["id"]
        role = ROLES.get(name) or ("sales_manager" if name.startswith("mgr_") else "sales_rep")
        roles.setdefault(role, []).append(name)
    org = {"departments": departments, "users": users,
           "roles": [{"role": role, "users": names} for role, names in roles.items()]}
    return org, reps


def generate() -> dict[str, Any]:
    """File name (in data/demo) → its JSON value."""
    g = Company()
    r = g.rng
    org, reps = people()
    regions = list(REGIONS)

    # Accounts and their contacts.
    accounts: list[dict[str, Any]] = []
    acc_meta: list[tuple[str, int]] = []  # (owner, created day)
    for i in range(COUNTS["account"]):
        region = r.choice(regions)
        province, city = r.choice(REGIONS[region][1])
        created = g.day()
        owner = r.choice(reps[region])
        accounts.append({
            "$ref": f"acc{i + 1:04d}", "$owner": owner, "$created_at": g.at(created),
            "name": g.company(city), "industry": r.choice(LEAF_INDUSTRIES),
            "size": r.choices(SIZES, weights=[15, 30, 25, 20, 10])[0],
            "source": _weighted(r, SOURCES), "region": {"province": province, "city": city},
            "status": "initial", "competitor": r.choice(COMPETITORS)})
        acc_meta.append((owner, created))

    contacts: list[dict[str, Any]] = []
    for acc, (owner, created) in zip(accounts, acc_meta, strict=True):
        for role in r.sample(["decision_maker", "influencer", "user"], r.choice((1, 2, 2, 3))):
            contacts.append({
                "$owner": owner, "$created_at": g.at(created), "account": {"$ref": acc["$ref"]},
                "name": g.person(), "title": r.choice(TITLES[role]), "phone": g.mobile(),
                "decision_role": role,
                "birthday": f"{r.randrange(1965, 1998)}-{r.randrange(1, 13):02d}-"
                            f"{r.randrange(1, 29):02d}"})

    # Leads.
    leads: list[dict[str, Any]] = []
    for _ in range(COUNTS["lead"]):
        region = r.choice(regions)
        province, city = r.choice(REGIONS[region][1])
        created = g.day()
        status = ("new" if -created < 7 else r.choices(
            ["contacting", "qualified", "converted", "invalid"], weights=[30, 15, 25, 30])[0])
        in_pool = status in ("new", "contacting") and r.random() < 0.25
        lead = {
            "name": g.person(), "company": g.company(city), "mobile": g.mobile(),
            "source": _weighted(r, SOURCES), "region": {"province": province, "city": city},
            "industry": r.choice(LEAF_INDUSTRIES), "size": r.choice(SIZES),
            "interests": r.sample(["CRM", "ERP", "BI", "OA", "MES", "云服务"], r.choice((1, 2))),
            "status": status, "in_pool": in_pool,
            "invalid_reason": "联系不上" if status == "invalid" else None,
            "last_follow_up": None if status == "new" else
            g.at(g.day(created, min(created + 20, END)))}
        rep = r.choice(reps[region])
        # A lead in the public pool has no owner: any rep may claim it.
        leads.append({"$owner": None if in_pool else rep, "$created_at": g.at(created),
                      **lead})

    # Opportunities with stage conversion.
    opps: list[dict[str, Any]] = []
    won: list[tuple[int, int, str, int, Decimal]] = []
    for n in range(COUNTS["opportunity"]):
        i = r.randrange(len(accounts))
        owner, acc_created = acc_meta[i]
        created = g.day(acc_created)
        amount = g.amount(20_000, 3_000_000)
        stage, entered = "qualification", created
        lost_reason = closed = None
        reached = "qualification"  # the furthest stage, kept when the deal is lost
        for current in STAGES:
            stage = reached = current
            step = r.randrange(5, 25)
            if entered + step > END:  # still open at this stage
                break
            if r.random() > ADVANCE[current]:
                stage, lost_reason, closed = "lost", _weighted(r, LOST_REASONS), entered + step
                break
            entered = entered + step
        else:
            stage, closed, reached = "won", entered, "won"
        bant = {k: stage in ("won", "negotiation") or r.random() < 0.5
                for k in ("bant_budget", "bant_authority", "bant_need", "bant_timeline")}
        opps.append({
            "$ref": f"opp{n + 1:04d}", "$owner": owner, "$created_at": g.at(created),
            "name": f"{str(accounts[i]['name'])[:12]} {r.choice(PROJECTS)}",
            "account": {"$ref": accounts[i]["$ref"]}, "amount": str(amount), "stage": stage,
            "stage_reached": reached,
            "expected_close": date(created + r.randrange(30, 150)),
            "source": accounts[i]["source"], "lost_reason": lost_reason,
            "closed_on": date(closed) if closed is not None else None,
            "stage_entered": date(closed if closed is not None else entered), **bant})
        if stage == "won":
            assert closed is not None
            won.append((n, i, owner, closed, amount))

    # Contracts for won deals, then plans and payments.
    contracts: list[dict[str, Any]] = []
    signed: list[tuple[int, int, str, int, Decimal]] = []
    # No contract is "in approval": package rows start no approval (their flows
    # would run as the installer, not as the owner), and a contract in
    # approval without one is stuck — in nobody's inbox, locked, and refused
    # when resubmitted. The unsubmitted ones are drafts their owners submit.
    for opp_index, acc_index, owner, closed, amount in won:
        status = "signed" if r.random() < 0.92 else r.choice(["approved", "draft"])
        contracts.append({
            "$ref": f"con{len(contracts) + 1:04d}", "$owner": owner,
            "$created_at": g.at(closed), "title": f"{opps[opp_index]['name']} 合同",
            "account": {"$ref": accounts[acc_index]["$ref"]},
            "opportunity": {"$ref": opps[opp_index]["$ref"]}, "amount": str(amount),
            "status": status, "sign_date": date(closed) if status == "signed" else None})
        if status == "signed":
            signed.append((len(contracts) - 1, acc_index, owner, closed, amount))

    plans: list[dict[str, Any]] = []
    payments_due: list[tuple[int, int, Decimal, str, str]] = []
    for c_index, _, owner, closed, amount in signed:
        parts = r.choice(([Decimal("0.3"), Decimal("0.6"), Decimal("0.1")],
                          [Decimal("0.5"), Decimal("0.5")], [Decimal("1")]))
        due = closed
        for n, share in enumerate(parts, start=1):
            due = due + r.randrange(20, 90)
            paid = due <= END and r.random() < 0.85
            ref = f"plan{len(plans) + 1:04d}"
            plans.append({"$ref": ref, "$owner": owner, "$created_at": g.at(closed),
                          "contract": {"$ref": contracts[c_index]["$ref"]},
                          "installment": n, "due_date": date(due),
                          "amount": str(amount * share), "paid": paid,
                          "overdue": due <= END and not paid})
            if paid:
                payments_due.append((c_index, due, amount * share, owner, ref))
    payments: list[dict[str, Any]] = []
    for c_index, due, amount, owner, ref in payments_due:
        received = min(due + r.randrange(-5, 15), END)
        payments.append({"$owner": owner, "$created_at": g.at(received),
                         "contract": {"$ref": contracts[c_index]["$ref"]},
                         "plan": {"$ref": ref}, "amount": str(amount),
                         "received_on": date(received),
                         "method": r.choice(["transfer", "transfer", "acceptance"])})

    # Service tickets on signed customers.
    tickets: list[dict[str, Any]] = []
    for _ in range(min(COUNTS["ticket"], len(signed) * 2)):
        c_index, acc_index, owner, closed, _ = r.choice(signed)
        opened = g.day(closed)
        status = "closed" if -opened > 14 else r.choice(["open", "in_progress", "resolved",
                                                         "closed"])
        tickets.append({
            "$owner": owner, "$created_at": g.at(opened),
            "account": {"$ref": accounts[acc_index]["$ref"]},
            "contract": {"$ref": contracts[c_index]["$ref"]},
            "problem": r.choice(PROBLEMS),
            "priority": r.choices(["low", "normal", "high", "urgent"],
                                  weights=[20, 50, 22, 8])[0],
            "status": status,
            "satisfaction": r.choices([5, 4, 3, 2], weights=[50, 30, 15, 5])[0]
            if status == "closed" else None})

    # Each account's satisfaction: the score of its latest closed ticket, as the
    # package's write-back flow leaves it (it does not run for package rows).
    latest: dict[str, tuple[int, int]] = {}
    for t in tickets:
        if t["status"] == "closed":
            ref, day = t["account"]["$ref"], _day(t["$created_at"])
            if ref not in latest or day >= latest[ref][0]:
                latest[ref] = (day, t["satisfaction"])
    for acc in accounts:
        if acc["$ref"] in latest:
            acc["satisfaction"] = str(latest[acc["$ref"]][1])

    # What follows draws from its own generator, so the rows above stay as they were.
    later = random.Random(SEED + 2)  # noqa: S311 - reproducible demo data
    deal_types(opps, later)
    follow_ups_and_status(accounts, acc_meta, opps, signed, tickets, later)
    follow_ups = follow_up_records(accounts, acc_meta, opps, random.Random(SEED + 3))  # noqa: S311

    return {"_org.json": org, "account.json": accounts, "contact.json": contacts,
            "lead.json": leads, "opportunity.json": opps, "contract.json": contracts,
            "payment_plan.json": plans, "payment.json": payments, "ticket.json": tickets,
            "follow_up.json": follow_ups}


def deal_types(opps: list[dict[str, Any]], r: random.Random) -> None:
    """New business, unless the account had won a deal before this one was
    created: then an upsell — or, the longer after that win, the likelier a
    renewal (its subscription term coming to an end)."""
    wins: dict[str, list[int]] = {}
    for o in opps:
        if o["stage"] == "won":
            wins.setdefault(o["account"]["$ref"], []).append(_day(o["closed_on"]))
    for o in opps:
        created = _day(o["$created_at"])
        earlier = [d for d in wins.get(o["account"]["$ref"], []) if d < created]
        if not earlier:
            o["deal_type"] = "new"
        elif r.random() < _renewal_chance(created - max(earlier)):
            o["deal_type"] = "renewal"
        else:
            o["deal_type"] = "upsell"


def _renewal_chance(gap: int) -> float:
    """How likely a deal created ``gap`` days after the account's last win is a renewal."""
    return 0.75 if gap >= 180 else 0.35 if gap >= 90 else 0.0


def follow_ups_and_status(accounts: list[dict[str, Any]], acc_meta: list[tuple[str, int]],
                          opps: list[dict[str, Any]], signed: list[Any],
                          tickets: list[dict[str, Any]], r: random.Random) -> None:
    """Each account's last follow-up and status, as the package's flows would
    have left them: 90 days without a follow-up made it dormant on that day
    (``dormant_since``); every other account was followed up in the last 90 days."""
    last_activity = {acc["$ref"]: created for acc, (_, created) in zip(accounts, acc_meta,
                                                                      strict=True)}
    for row in [*opps, *tickets]:
        ref = row["account"]["$ref"]
        days = [_day(row["$created_at"])] + ([_day(row["closed_on"])]
                                             if row.get("closed_on") else [])
        last_activity[ref] = max(last_activity[ref], *days)
    signed_accounts = {accounts[a]["$ref"] for _, a, *_ in signed}
    open_accounts = {o["account"]["$ref"] for o in opps if o["stage"] not in ("won", "lost")}
    for acc in accounts:
        ref, active = acc["$ref"], last_activity[acc["$ref"]]
        status = ("signed" if ref in signed_accounts else
                  "negotiating" if ref in open_accounts else "intent")
        # Quiet since: prospects whose deals ended, and some long-standing customers.
        quiet = ref not in open_accounts and (status == "intent" or (
            active <= -180 and r.random() < 0.35))
        last = min(active + r.randrange(0, 30), END)
        if quiet and last <= -91:
            acc["status"], acc["dormant_since"] = "dormant", date(last + 90)
        else:
            acc["status"] = status
            # Followed up lately (the dormancy flow would not fire on install day).
            last = r.randrange(max(active, -89), END + 1)
        acc["last_follow_up"] = {"$datetime": f"{last:+d}d {9 + r.randrange(10):02d}:"
                                              f"{r.randrange(60):02d}"}


FOLLOW_UPS = {
    "call": ["电话沟通项目进展，客户确认下周内部评审", "电话回访使用情况，客户反馈整体稳定",
             "电话确认预算审批节点", "电话了解竞品报价情况"],
    "visit": ["上门拜访 IT 负责人，演示报表模块", "拜访采购部，沟通付款条件",
              "现场调研业务流程，整理需求清单"],
    "email": ["邮件发送方案与报价单", "邮件答复技术问题清单"],
    "wechat": ["微信沟通上线时间安排", "微信发送案例资料，客户表示感兴趣"],
    "meeting": ["组织方案汇报会，客户高层参加", "召开项目启动会，确定双方对接人"],
}


def follow_up_records(accounts: list[dict[str, Any]], acc_meta: list[tuple[str, int]],
                      opps: list[dict[str, Any]], r: random.Random) -> list[dict[str, Any]]:
    """Each account's follow-ups, by its owner: the last one at the account's
    ``last_follow_up`` and up to three earlier ones; a follow-up made while
    one of the account's deals was open is about that deal. The package's
    write-back flow does not run for package rows, so the accounts keep the
    times written above."""
    deals: dict[str, list[dict[str, Any]]] = {}
    for o in opps:
        deals.setdefault(o["account"]["$ref"], []).append(o)
    rows: list[dict[str, Any]] = []
    for acc, (owner, created) in zip(accounts, acc_meta, strict=True):
        last_at = acc["last_follow_up"]
        last = _day(last_at)
        earlier = sorted(r.sample(range(created, last), min(r.randrange(4), last - created))
                         ) if last > created else []
        stamps = [f"{d:+d}d {9 + r.randrange(10):02d}:{r.randrange(60):02d}"
                  for d in earlier]
        for stamp in [*({"$datetime": s} for s in stamps), last_at]:
            day = _day(stamp)
            kind = r.choices(list(FOLLOW_UPS), weights=[40, 20, 10, 20, 10])[0]
            row: dict[str, Any] = {"$owner": owner, "$created_at": stamp,
                                   "account": {"$ref": acc["$ref"]}, "type": kind,
                                   "summary": r.choice(FOLLOW_UPS[kind])}
            open_then = [o for o in deals.get(acc["$ref"], []) if _day(o["$created_at"]) <= day
                         and (not o.get("closed_on") or _day(o["closed_on"]) >= day)]
            if open_then and r.random() < 0.7:
                deal = r.choice(open_then)
                row["opportunity"] = {"$ref": deal["$ref"]}
            rows.append(row)
    return rows


def _day(value: dict[str, str]) -> int:
    """The day offset of a ``$date`` / ``$datetime`` value written above."""
    spec = value.get("$date") or value["$datetime"]
    return int(spec.split("d")[0])


def _row(row: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False)


def render(name: str, value: Any) -> str:
    """A file's text: a list with one row per line (diffs stay readable)."""
    if isinstance(value, list):
        return "[\n" + ",\n".join(_row(row) for row in value) + "\n]\n"
    parts = [f'"{key}": [\n  ' + ",\n  ".join(_row(item) for item in items) + "\n]"
             for key, items in value.items()]
    return "{" + ",\n".join(parts) + "}\n"


def files() -> dict[str, str]:
    """data/demo file name → text, exactly as committed."""
    return {name: render(name, value) for name, value in generate().items()}


def main() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    wanted = files()
    for stale in sorted(set(p.name for p in DEMO.glob("*.json")) - set(wanted)):
        (DEMO / stale).unlink()
    for name, text in wanted.items():
        (DEMO / name).write_text(text, encoding="utf-8")
    total = sum(len(t.encode()) for t in wanted.values())
    print(f"wrote {len(wanted)} files ({total / 1e6:.1f} MB) to {DEMO}", file=sys.stderr)


if __name__ == "__main__":
    main()
