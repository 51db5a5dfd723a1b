"""A publish whose backfill changes stored formula values of form X also
refreshes the rollups of other forms over X that read those values (the
aggregated field or the rollup's filter), and the formulas over those rollups,
up the chain of forms, on both backends. Like the backfill itself it is a
recomputation, not an edit: no history entry, event or new record version; a
form's data version moves only when its values change."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tangram.engines.forms import records
from tangram.engines.forms.systables import form_tables_table
from tests.factories import World, field, form_body


@pytest.fixture
def world(engine):
    return World(engine)


def net(expression: str) -> dict[str, Any]:
    return field("net_amount", "formula", expression=expression, result_type="decimal",
                 scale=2)


def contract(*extra: dict[str, Any], expression: str = "record.amount * 0.9") -> dict[str, Any]:
    return form_body("contract", field("account", "relation", target="account"),
                     field("amount", "decimal", scale=2), net(expression), *extra)


ACCOUNT = (field("contract_total", "rollup", source={"form": "contract", "via": "account"},
                 aggregate="sum", field="net_amount"),
           field("doubled", "formula", expression="record.contract_total * 2",
                 result_type="decimal", scale=2))


def create(world: World, form: str, **values: Any) -> dict[str, Any]:
    return world.run(records.create_record, app=world.app, form=form, data=values)


def get(world: World, form: str, rec: dict[str, Any]) -> dict[str, Any]:
    return world.run(records.get_record, app=world.app, form=form, record_id=rec["id"])


def history(world: World, form: str, rec: dict[str, Any]) -> list[str]:
    return [h["action"] for h in world.run(records.record_history, app=world.app, form=form,
                                           record_id=rec["id"])]


def data_version(world: World, form: str) -> int:
    ft = form_tables_table
    return world.run(lambda ctx: ctx.session.execute(
        sa.select(ft.c.data_version).where(ft.c.app == world.app, ft.c.form == form))
        .scalar_one())


def setup_accounts(world: World, *account_extra: dict[str, Any]) -> dict[str, Any]:
    world.publish(form_body("account", field("name")))
    world.publish(contract())
    world.publish(form_body("account", field("name"), *ACCOUNT, *account_extra))
    acc = create(world, "account", name="A")
    for amount in ("100", "200"):
        create(world, "contract", account=acc["id"], amount=amount)
    acc = get(world, "account", acc)
    assert (acc["contract_total"], acc["doubled"]) == ("270.00", "540.00")
    return acc


def test_a_changed_child_formula_updates_the_parent_rollup_and_its_formula(world):
    acc = setup_accounts(world)
    other = create(world, "account", name="B")  # no contracts: nothing to change
    other = get(world, "account", other)
    before, entries = data_version(world, "account"), history(world, "account", acc)

    world.publish(contract(expression="record.amount * 0.8"))

    stored = get(world, "account", acc)
    assert (stored["contract_total"], stored["doubled"]) == ("240.00", "480.00")
    # a recomputation, not an edit: same version, no new history entry
    assert stored["version"] == acc["version"]
    assert history(world, "account", acc) == entries
    untouched = get(world, "account", other)
    assert (untouched["contract_total"], untouched["version"]) == ("0.00", other["version"])
    assert data_version(world, "account") > before  # cached reports over accounts refresh


def test_a_child_publish_changing_no_values_leaves_parents_untouched(world):
    acc = setup_accounts(world)
    world.publish(contract(expression="record.amount * 0.8"))
    acc = get(world, "account", acc)
    assert acc["contract_total"] == "240.00"
    before = data_version(world, "account")

    # same values written differently, and a new formula no rollup reads
    world.publish(contract(field("gross", "formula", expression="record.amount * 2",
                                 result_type="decimal", scale=2),
                           expression="record.amount * 8 / 10"))

    assert get(world, "account", acc) == acc  # values and version
    assert data_version(world, "account") == before


def test_a_rollup_filter_reading_a_changed_child_formula_is_refreshed(world):
    world.publish(form_body("account", field("name")))
    world.publish(contract())
    big = field("big_total", "rollup", source={"form": "contract", "via": "account"},
                aggregate="count", filter={"field": "net_amount", "op": "gte", "value": 150})
    world.publish(form_body("account", field("name"), big))
    acc = create(world, "account", name="A")
    for amount in ("100", "200"):
        create(world, "contract", account=acc["id"], amount=amount)
    assert get(world, "account", acc)["big_total"] == 1  # 90, 180

    world.publish(contract(expression="record.amount * 2"))  # 200, 400

    assert get(world, "account", acc)["big_total"] == 2


def test_a_two_level_chain_follows_to_the_grandparent(world):
    world.publish(form_body("region", field("name")))
    world.publish(form_body("account", field("name"),
                            field("region", "relation", target="region")))
    world.publish(contract())
    world.publish(form_body("account", field("name"),
                            field("region", "relation", target="region"), *ACCOUNT))
    world.publish(form_body(
        "region", field("name"),
        field("accounts_total", "rollup", source={"form": "account", "via": "region"},
              aggregate="sum", field="doubled"),
        field("goal", "formula", expression="record.accounts_total + 1",
              result_type="decimal", scale=2)))
    reg = create(world, "region", name="North")
    accounts = [create(world, "account", name=n, region=reg["id"]) for n in ("A", "B")]
    for acc, amount in zip(accounts, ("100", "200"), strict=True):
        create(world, "contract", account=acc["id"], amount=amount)
    reg = get(world, "region", reg)
    assert (reg["accounts_total"], reg["goal"]) == ("540.00", "541.00")  # 2 × (90 + 180)
    before, entries = data_version(world, "region"), history(world, "region", reg)

    world.publish(contract(expression="record.amount * 0.5"))

    stored = get(world, "region", reg)
    assert (stored["accounts_total"], stored["goal"]) == ("300.00", "301.00")
    assert stored["version"] == reg["version"]
    assert history(world, "region", reg) == entries
    assert data_version(world, "region") > before
    assert [get(world, "account", a)["doubled"] for a in accounts] == ["100.00", "200.00"]


def test_forms_rolling_each_other_up_in_a_cycle_stop(world):
    # team.score adds up player.points; player.points reads player.bonus, the
    # score of the team the player captains: each level of the backfill
    # changes values again, so only the depth bound stops it.
    world.publish(form_body("team", field("name")))
    world.publish(form_body("player", field("team", "relation", target="team"),
                            field("base", "integer")))
    world.publish(form_body("team", field("name"),
                            field("captain", "relation", target="player")))

    def player(expression: str) -> dict[str, Any]:
        return form_body(
            "player", field("team", "relation", target="team"), field("base", "integer"),
            field("bonus", "rollup", source={"form": "team", "via": "captain"},
                  aggregate="sum", field="score"),
            field("points", "formula", expression=expression, result_type="decimal", scale=0))

    world.publish(form_body("player", field("team", "relation", target="team"),
                            field("base", "integer"),
                            field("points", "formula", expression="record.base",
                                  result_type="decimal", scale=0)))
    world.publish(form_body("team", field("name"),
                            field("captain", "relation", target="player"),
                            field("score", "rollup", source={"form": "player", "via": "team"},
                                  aggregate="sum", field="points")))
    world.publish(player("record.base"))
    team = create(world, "team", name="T")
    star = create(world, "player", team=team["id"], base=1)
    world.run(records.update_record, app=world.app, form="team", record_id=team["id"],
              changes={"captain": star["id"]}, expected_version=None)
    assert get(world, "team", team)["score"] == "1.00"

    world.publish(player("record.base + record.bonus"))  # points now feed themselves

    # followed one form at a time (team, player, team, …) and stopped after
    # MAX_CASCADE_DEPTH levels, half of them the team's: 2, 3, 4, 5
    assert get(world, "team", team)["score"] == f"{1 + records.MAX_CASCADE_DEPTH // 2}.00"
