"""The CRM package (apps_catalog/crm) validates, installs and loads its demo
company on every backend."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.engines.forms.registry import get_runtime
from tangram.platform.packages.export import validate_files
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package
from tests.factories import World

CRM = Path(__file__).resolve().parents[2] / "apps_catalog" / "crm"


def test_the_crm_package_validates():
    report = validate_files(read_package(CRM))
    assert report["valid"], report["errors"]
    assert {"lead", "account", "contact", "follow_up", "opportunity", "quote", "product",
            "contract", "payment_plan", "payment", "ticket", "task"} <= set(
        report["definitions"]["form"])


def test_the_crm_installs_with_its_demo_company(engine: Engine):
    world = World(engine)
    result = world.run(install_package, load_package(read_package(CRM)), demo=True)
    rows = result["rows"]
    assert rows["lead"] == 2000 and rows["account"] == 600 and rows["opportunity"] == 1500
    assert rows["product_category"] == 6 and rows["contract"] > 100 and rows["ticket"] > 100
    with world.sessions.begin() as s:
        acc = get_runtime(s, "crm", "account").table
        opp = get_runtime(s, "crm", "opportunity").table
        levels = dict(s.execute(sa.select(acc.c.level, sa.func.count())
                                .group_by(acc.c.level)).all())
        stages = dict(s.execute(sa.select(opp.c.stage, sa.func.count())
                                .group_by(opp.c.stage)).all())
        owners = s.execute(sa.select(sa.func.count(sa.distinct(opp.c.owner)))).scalar()
        months = {d.strftime("%Y-%m") for (d,) in s.execute(sa.select(opp.c.created_at))}
    assert levels.get("vip", 0) > 0 and levels["normal"] > levels.get("vip", 0)  # the rollup
    assert set(stages) == {"qualification", "discovery", "proposal", "negotiation", "won",
                           "lost"}
    assert stages["won"] < stages["lost"]
    assert owners == 12 and len(months) >= 17
