"""Demo data of the CRM package: a believable mid-size software vendor.

3 regions (华东, 华北, 华南) × 2 teams, 12 sales reps, 3 regional managers,
a sales director and a finance user (password ``tangram-demo``); 600
accounts with contacts, 2,000 leads, 1,500 opportunities over 18 months that
move through the stages with realistic conversion, contracts for the won
ones, payment plans and payments, and service tickets. Deterministic (a
fixed seed and dates relative to a fixed anchor month) and fast: every form
goes through the form engine's bulk path, so every row is validated.

Demo rows are created by the system and then given their owner and creation
time (the bulk path stamps "now" and the caller), so reports show 18 months
of history and each rep's own pipeline.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tangram.engines.context import EngineContext
from tangram.metamodel import storage
from tangram.platform.packages.install import DEMO_GENERATORS
from tangram.platform.packages.loader import Package

SEED = 20260101
PASSWORD = "tangram-demo"  # noqa: S105 - printed by ./run demo; demo data only
MONTHS = 18
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


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _anchor(ctx: EngineContext) -> date:
    """The demo's "today": the first of the current month, so data stays fresh
    yet is the same on every run within a month."""
    today = ctx.today()
    return today.replace(day=1)


class _Gen:
    def __init__(self, ctx: EngineContext, app: str) -> None:
        self.ctx = ctx
        self.app = app
        self.rng = random.Random(SEED)  # noqa: S311 - reproducible demo data, not secrets
        self.end = _anchor(ctx)
        self.start = self.end - timedelta(days=MONTHS * 30)
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

    def day(self, lo: date | None = None, hi: date | None = None) -> date:
        lo, hi = lo or self.start, hi or self.end
        span = max((hi - lo).days, 0)
        # More activity in recent months: a growing business.
        return lo + timedelta(days=int(span * (self.rng.random() ** 0.8)))

    def amount(self, lo: int, hi: int) -> Decimal:
        value = min(max(self.rng.lognormvariate(12.2, 0.9), lo), hi)
        return Decimal(int(value / 1000) * 1000)


# --- people ------------------------------------------------------------------------------

def _people(ctx: EngineContext, app: str) -> dict[str, Any]:
    """Users, the org chart and their roles (idempotent: existing users are kept)."""
    from tangram.platform.auth.service import create_user, find_user_by_username
    from tangram.platform.permissions.org_import import OrgChart, import_org
    from tangram.platform.permissions.roles import assign_role

    rng = random.Random(SEED + 1)  # noqa: S311 - reproducible demo data
    departments = [{"id": "sales", "parent_id": None, "name": "销售中心"},
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
    for u in users:
        if find_user_by_username(ctx.session, u["id"]) is None:
            create_user(ctx.session, username=u["id"], password=PASSWORD,
                        display_name=u["name"], language="zh")
    chart = OrgChart(departments=[{**d, "parent_id": d["parent_id"] or ""}
                                  for d in departments],
                     users=[{**u, "mobile": None, "primary_department_id": None,
                             "heads": set(u["is_head"])} for u in users])
    import_org(ctx.session, chart, actor_id=None, now=ctx.now())
    ids = {u["id"]: find_user_by_username(ctx.session, u["id"]).id  # type: ignore[union-attr]
           for u in users}
    roles = {"director": "sales_director", "finance": "finance"}
    for username, user_id in ids.items():
        role = roles.get(username) or ("sales_manager" if username.startswith("mgr_")
                                       else "sales_rep")
        if storage.find_definition(ctx.session, app=app, kind="role", key=role):
            assign_role(ctx.session, app=app, role=role, user_id=user_id, actor_id=None,
                        now=ctx.now())
    return {"reps": {region: [ids[r] for r in names] for region, names in reps.items()},
            "ids": ids}


# --- rows --------------------------------------------------------------------------------

def _bulk(ctx: EngineContext, app: str, form: str, rows: list[dict[str, Any]],
          system: list[tuple[uuid.UUID, datetime]]) -> list[str]:
    """Create ``rows`` and give each its owner and creation time."""
    from tangram.engines.forms.records import bulk_create
    from tangram.engines.forms.registry import get_runtime

    ids: list[str] = []
    for start in range(0, len(rows), 2000):
        created = bulk_create(ctx, app=app, form=form, rows=rows[start:start + 2000],
                              source="demo", allow_read_only=True)
        ids.extend(r["id"] for r in created)
    t = get_runtime(ctx.session, app, form).table
    ctx.session.execute(
        sa.update(t).where(t.c.id == sa.bindparam("_id")).values(
            owner=sa.bindparam("_owner"), created_by=sa.bindparam("_owner"),
            created_at=sa.bindparam("_at"), updated_at=sa.bindparam("_at")),
        [{"_id": uuid.UUID(i), "_owner": owner, "_at": at}
         for i, (owner, at) in zip(ids, system, strict=True)])
    return ids


def _at(g: _Gen, d: date) -> datetime:
    return datetime.combine(d, time(1 + g.rng.randrange(10), g.rng.randrange(60)), tzinfo=UTC)


def generate(ctx: EngineContext, package: Package) -> dict[str, int]:
    app = package.key
    g = _Gen(ctx, app)
    r = g.rng
    people = _people(ctx, app)
    counts: dict[str, int] = {}
    reps_by_region: Mapping[str, list[uuid.UUID]] = people["reps"]
    regions = list(REGIONS)

    # Accounts (600) and their contacts.
    accounts, acc_sys, acc_meta = [], [], []
    for _ in range(600):
        region = r.choice(regions)
        province, city = r.choice(REGIONS[region][1])
        created = g.day()
        owner = r.choice(reps_by_region[region])
        accounts.append({
            "name": g.company(city), "industry": r.choice(LEAF_INDUSTRIES),
            "size": r.choices(SIZES, weights=[15, 30, 25, 20, 10])[0],
            "source": _weighted(r, SOURCES), "region": {"province": province, "city": city},
            "status": "initial", "satisfaction": None,
            "competitor": r.choice([None, "Salesforce", "纷享销客", "销售易", "自研系统",
                                    "Excel"])})
        acc_sys.append((owner, _at(g, created)))
        acc_meta.append((region, owner, created))
    account_ids = _bulk(ctx, app, "account", accounts, acc_sys)
    counts["account"] = len(account_ids)

    contacts, con_sys = [], []
    for acc_id, (_, owner, created) in zip(account_ids, acc_meta, strict=True):
        for role in r.sample(["decision_maker", "influencer", "user"], r.choice((1, 2, 2, 3))):
            contacts.append({"account": acc_id, "name": g.person(),
                             "title": r.choice(TITLES[role]),
                             "phone": g.mobile(), "decision_role": role,
                             "birthday": date(r.randrange(1965, 1998), r.randrange(1, 13),
                                              r.randrange(1, 29)).isoformat()})
            con_sys.append((owner, _at(g, created)))
    counts["contact"] = len(_bulk(ctx, app, "contact", contacts, con_sys))

    # Leads (2,000).
    leads, lead_sys = [], []
    for _ in range(2000):
        region = r.choice(regions)
        province, city = r.choice(REGIONS[region][1])
        created = g.day()
        age = (g.end - created).days
        status = ("new" if age < 7 else r.choices(
            ["contacting", "qualified", "converted", "invalid"], weights=[30, 15, 25, 30])[0])
        in_pool = status in ("new", "contacting") and r.random() < 0.25
        leads.append({
            "name": g.person(), "company": g.company(city), "mobile": g.mobile(),
            "source": _weighted(r, SOURCES), "region": {"province": province, "city": city},
            "industry": r.choice(LEAF_INDUSTRIES), "size": r.choice(SIZES),
            "interests": r.sample(["CRM", "ERP", "BI", "OA", "MES", "云服务"], r.choice((1, 2))),
            "status": status, "in_pool": in_pool,
            "invalid_reason": "联系不上" if status == "invalid" else None,
            "last_follow_up": None if status == "new" else
            _at(g, g.day(created, min(created + timedelta(days=20), g.end))).isoformat()})
        lead_sys.append((r.choice(reps_by_region[region]), _at(g, created)))
    counts["lead"] = len(_bulk(ctx, app, "lead", leads, lead_sys))

    # Opportunities (1,500) with stage conversion.
    opps, opp_sys, won = [], [], []
    for _ in range(1500):
        i = r.randrange(len(account_ids))
        region, owner, acc_created = acc_meta[i]
        created = g.day(acc_created)
        amount = g.amount(20_000, 3_000_000)
        stage, entered = "qualification", created
        lost_reason = closed = None
        for current in STAGES:
            stage = current
            step = timedelta(days=r.randrange(5, 25))
            if entered + step > g.end:  # still open at this stage
                break
            if r.random() > ADVANCE[current]:
                stage, lost_reason, closed = "lost", _weighted(r, LOST_REASONS), entered + step
                break
            entered = entered + step
        else:
            stage, closed = "won", entered
        bant = {k: stage in ("won", "negotiation") or r.random() < 0.5
                for k in ("bant_budget", "bant_authority", "bant_need", "bant_timeline")}
        opps.append({
            "name": f"{str(accounts[i]['name'])[:12]} {r.choice(PROJECTS)}",
            "account": account_ids[i], "amount": str(amount), "stage": stage,
            "expected_close": (created + timedelta(days=r.randrange(30, 150))).isoformat(),
            "source": accounts[i]["source"], "lost_reason": lost_reason,
            "closed_on": closed.isoformat() if closed else None,
            "stage_entered": (closed or entered).isoformat(), **bant})
        opp_sys.append((owner, _at(g, created)))
        if stage == "won":
            won.append((len(opps) - 1, i, owner, closed, amount))
    opp_ids = _bulk(ctx, app, "opportunity", opps, opp_sys)
    counts["opportunity"] = len(opp_ids)

    # Contracts for won deals, then plans and payments.
    contracts, con_sys2, signed = [], [], []
    for opp_index, acc_index, owner, closed, amount in won:
        status = "signed" if r.random() < 0.92 else r.choice(["approved", "in_approval"])
        assert closed is not None
        contracts.append({"title": f"{opps[opp_index]['name']} 合同",
                          "account": account_ids[acc_index], "opportunity": opp_ids[opp_index],
                          "amount": str(amount), "status": status,
                          "sign_date": closed.isoformat() if status == "signed" else None})
        con_sys2.append((owner, _at(g, closed)))
        if status == "signed":
            signed.append((len(contracts) - 1, acc_index, owner, closed, amount))
    contract_ids = _bulk(ctx, app, "contract", contracts, con_sys2)
    counts["contract"] = len(contract_ids)

    plans, plan_sys, plan_meta = [], [], []
    for c_index, _, owner, closed, amount in signed:
        parts = r.choice(([Decimal("0.3"), Decimal("0.6"), Decimal("0.1")],
                          [Decimal("0.5"), Decimal("0.5")], [Decimal("1")]))
        due = closed
        for n, share in enumerate(parts, start=1):
            due = due + timedelta(days=r.randrange(20, 90))
            paid = due < g.end and r.random() < 0.85
            plans.append({"contract": contract_ids[c_index], "installment": n,
                          "due_date": due.isoformat(), "amount": str(amount * share),
                          "paid": paid, "overdue": due < g.end and not paid})
            plan_sys.append((owner, _at(g, closed)))
            plan_meta.append((c_index, due, paid, amount * share, owner))
    plan_ids = _bulk(ctx, app, "payment_plan", plans, plan_sys)
    counts["payment_plan"] = len(plan_ids)
    payments, pay_sys = [], []
    for plan_id, (c_index, due, paid, amount, owner) in zip(plan_ids, plan_meta, strict=True):
        if paid:
            received = min(due + timedelta(days=r.randrange(-5, 15)), g.end)
            payments.append({"contract": contract_ids[c_index], "plan": plan_id,
                             "amount": str(amount), "received_on": received.isoformat(),
                             "method": r.choice(["transfer", "transfer", "acceptance"])})
            pay_sys.append((owner, _at(g, received)))
    counts["payment"] = len(_bulk(ctx, app, "payment", payments, pay_sys))

    # Service tickets on signed customers.
    tickets, t_sys = [], []
    for _ in range(min(400, len(signed) * 2)):
        c_index, acc_index, owner, closed, _ = r.choice(signed)
        opened = g.day(closed)
        status = "closed" if (g.end - opened).days > 14 else r.choice(["open", "in_progress",
                                                                      "resolved", "closed"])
        tickets.append({"account": account_ids[acc_index], "contract": contract_ids[c_index],
                        "problem": r.choice(["无法登录", "报表导出缓慢", "数据同步失败",
                                             "需要新增字段", "接口调用报错", "培训需求"]),
                        "priority": r.choices(["low", "normal", "high", "urgent"],
                                              weights=[20, 50, 22, 8])[0],
                        "status": status,
                        "satisfaction": r.choices([5, 4, 3, 2], weights=[50, 30, 15, 5])[0]
                        if status == "closed" else None})
        t_sys.append((owner, _at(g, opened)))
    counts["ticket"] = len(_bulk(ctx, app, "ticket", tickets, t_sys))

    # Account status follows what happened to them.
    from tangram.engines.forms.registry import get_runtime

    t = get_runtime(ctx.session, app, "account").table
    signed_accounts = {account_ids[a] for _, a, *_ in signed}
    open_accounts = {o["account"] for o in opps if o["stage"] not in ("won", "lost")}
    updates = []
    for acc_id, (_, _, created) in zip(account_ids, acc_meta, strict=True):
        status = ("signed" if acc_id in signed_accounts else
                  "negotiating" if acc_id in open_accounts else
                  "dormant" if (g.end - created).days > 180 else "intent")
        updates.append({"_id": uuid.UUID(acc_id), "_status": status})
    ctx.session.execute(sa.update(t).where(t.c.id == sa.bindparam("_id"))
                        .values(status=sa.bindparam("_status")), updates)
    return counts


DEMO_GENERATORS["crm"] = generate
