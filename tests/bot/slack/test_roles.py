"""Every role rule, as a table: the rule itself (bot.roles) and the same rule enforced through the
real Bolt app on the clicking user, with private refusals that are audited."""

from __future__ import annotations

import json

import pytest

from bot import messages as text
from bot.roles import ADMIN, AUDITOR, MEMBER, PERMISSIONS, REVIEWER, Roles, allowed
from bot.slack import blocks as ui
from storage.audit import list_events
from storage.examples import add_example, get_example
from tests.bot.slack.conftest import ADMIN as ADMIN_ID
from tests.bot.slack.conftest import AUDITOR as AUDITOR_ID
from tests.bot.slack.conftest import GROUP_REVIEWER, REVIEWER_GROUP
from tests.bot.slack.conftest import MEMBER as MEMBER_ID
from tests.bot.slack.conftest import REVIEWER as REVIEWER_ID

EVERYONE = {"help", "ask", "vote", "correct", "share", "home"}
# capability: (member, reviewer, auditor, admin)
TABLE = {
    **{cap: (True, True, True, True) for cap in EVERYONE},
    "status": (False, True, True, True),
    "review": (False, True, False, True),
    "audit": (False, False, True, True),
    "adapters": (False, False, True, True),
    **{
        cap: (False, False, False, True)
        for cap in ("retrain", "activate", "rollback", "discard", "forget", "export", "ingest")
    },
}


def test_the_table_covers_every_capability():
    assert set(TABLE) == set(PERMISSIONS)


@pytest.mark.parametrize("capability", sorted(TABLE))
@pytest.mark.parametrize("column,roles", [(0, {MEMBER}), (1, {REVIEWER}), (2, {AUDITOR}), (3, {ADMIN})])
def test_rule(capability, column, roles):
    assert allowed(capability, roles) is TABLE[capability][column]


def test_unknown_capability_is_refused_even_to_admins():
    assert not allowed("format-disk", {ADMIN})


def test_user_groups_are_resolved_and_cached():
    calls = []

    def members(group):
        calls.append(group)
        return ["U1", "U2"]

    roles = Roles(admins=["U9"], reviewers=["S1"], list_group_members=members, ttl=60)
    assert roles.can("U1", "review") and roles.can("U2", "review") and not roles.can("U3", "review")
    assert calls == ["S1"]  # one lookup for three checks
    assert roles.can("U9", "forget") and not roles.can("U1", "forget")


def test_unresolvable_group_grants_nothing():
    def broken(group):
        raise RuntimeError("slack is down")

    assert not Roles(reviewers=["S1"], list_group_members=broken).can("U1", "review")


# --- through the app: each subcommand and button, by each kind of user -----------------------------
USERS = {
    "member": MEMBER_ID,
    "reviewer": REVIEWER_ID,
    "group-reviewer": GROUP_REVIEWER,
    "auditor": AUDITOR_ID,
    "admin": ADMIN_ID,
}
COMMAND_CASES = [
    # (subcommand, who, allowed)
    ("help", "member", True),
    ("status", "member", False),
    ("status", "auditor", True),
    ("status", "reviewer", True),
    ("review", "member", False),
    ("review", "auditor", False),
    ("review", "group-reviewer", True),
    ("review", "admin", True),
    ("audit", "reviewer", False),
    ("audit", "auditor", True),
    ("adapters", "member", False),
    ("adapters", "auditor", True),
    ("retrain", "reviewer", False),
    ("retrain", "auditor", False),
    ("retrain", "admin", True),
    ("export", "auditor", False),
    ("export", "admin", True),
    ("forget <@U123>", "reviewer", False),
    ("activate default/v1", "auditor", False),
    ("rollback", "member", False),
]


@pytest.mark.parametrize("command,who,ok", COMMAND_CASES)
def test_command_roles(slack, command, who, ok):
    user = USERS[who]
    response = slack.command(command, user=user)
    assert response.status == 200
    slack.settle()
    denied = list_events(slack.engine, action="slack.denied")
    if ok:
        assert denied == []
        assert slack.fake.calls("response_url"), "an allowed command answers through response_url"
    else:
        assert json.loads(response.body)["response_type"] == "ephemeral"
        assert "needs the" in json.loads(response.body)["text"]
        assert [(e.actor, e.target) for e in denied] == [(user, command.split()[0])]


BUTTON_CASES = [
    (ui.APPROVE, "member", False),
    (ui.APPROVE, "auditor", False),
    (ui.APPROVE, "reviewer", True),
    (ui.APPROVE, "group-reviewer", True),
    (ui.APPROVE, "admin", True),
    (ui.REJECT, "member", False),
    (ui.REJECT, "reviewer", True),
    (ui.EDIT_APPROVE, "auditor", False),
    (ui.EDIT_APPROVE, "reviewer", True),
    (ui.RETRAIN, "reviewer", False),
    (ui.RETRAIN, "admin", True),
    (ui.ROLLBACK, "auditor", False),
]


@pytest.mark.parametrize("action_id,who,ok", BUTTON_CASES)
def test_button_roles_check_the_clicking_user(slack, action_id, who, ok):
    example = add_example(slack.engine, "q?", "a.", author_id="UX")
    value = "default" if action_id in (ui.RETRAIN, ui.ROLLBACK) else str(example.id)
    slack.action(action_id, value, user=USERS[who], channel="CREVIEW")
    slack.settle()
    denied = list_events(slack.engine, action="slack.denied")
    refusals = [c for c in slack.fake.calls("response_url") if "needs the" in (c.get("text") or "")]
    if ok:
        assert not denied and not refusals
    else:
        assert len(denied) == 1 and denied[0].actor == USERS[who]
        assert len(refusals) == 1 and refusals[0]["response_type"] == "ephemeral"
        assert get_example(slack.engine, example.id).status == "pending"
        assert not slack.fake.calls("views.open")


def test_help_lists_only_what_works_for_the_role(slack):
    slack.command("help", user=MEMBER_ID)
    slack.command("help", user=ADMIN_ID)
    member_help, admin_help = [c["text"] for c in slack.fake.wait_for("response_url", 2)]
    if "command-UMEMBER" not in slack.fake.calls("response_url")[0]["_url"]:
        member_help, admin_help = admin_help, member_help
    assert "/apprenti ask" in member_help and "/apprenti retrain" not in member_help
    assert "/apprenti review" not in member_help
    assert "/apprenti retrain" in admin_help and "/apprenti export" in admin_help
    for name in ("activate", "rollback", "forget", "ingest"):
        assert f"/apprenti {name}" in admin_help


def test_refused_modal_submit_answers_in_the_modal(slack):
    response = slack.submit_view(ui.EDIT_VIEW, {ui.ANSWER_BLOCK: "x"}, {"example": 1}, user=MEMBER_ID)
    body = json.loads(response.body)
    assert body["response_action"] == "errors" and "reviewer" in body["errors"][ui.ANSWER_BLOCK]
    assert text.SLACK_DENIED.split(",")[0].split("*")[0] in body["errors"][ui.ANSWER_BLOCK]


def test_group_membership_comes_from_usergroups_users_list(slack):
    slack.command("review", user=GROUP_REVIEWER)
    slack.command("review", user=GROUP_REVIEWER)
    slack.settle()
    lookups = slack.fake.calls("usergroups.users.list")
    assert [c["usergroup"] for c in lookups] == [REVIEWER_GROUP]  # cached after the first
