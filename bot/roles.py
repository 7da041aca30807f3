"""Who may do what. Roles come from APPRENTI_ADMINS / _REVIEWERS / _AUDITORS: Slack user ids
(U…, W…) or user-group ids (S…), the latter expanded through `usergroups.users.list` and cached.

Every permission lives in PERMISSIONS, one row per capability, so the rules are read (and
tested) as a table. Admins may do everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("apprenti.roles")

ADMIN, REVIEWER, AUDITOR, MEMBER = "admin", "reviewer", "auditor", "member"
ROLE_ENV = {ADMIN: "ADMINS", REVIEWER: "REVIEWERS", AUDITOR: "AUDITORS"}

# capability -> roles allowed (MEMBER means everyone in the workspace).
PERMISSIONS: dict[str, frozenset[str]] = {
    "help": frozenset({MEMBER}),
    "ask": frozenset({MEMBER}),
    "vote": frozenset({MEMBER}),
    "correct": frozenset({MEMBER}),
    "share": frozenset({MEMBER}),
    "home": frozenset({MEMBER}),
    "status": frozenset({ADMIN, REVIEWER, AUDITOR}),
    "review": frozenset({ADMIN, REVIEWER}),
    "audit": frozenset({ADMIN, AUDITOR}),
    "adapters": frozenset({ADMIN, AUDITOR}),
    "retrain": frozenset({ADMIN}),
    "activate": frozenset({ADMIN}),
    "rollback": frozenset({ADMIN}),
    "discard": frozenset({ADMIN}),
    "forget": frozenset({ADMIN}),
    "export": frozenset({ADMIN}),
    "ingest": frozenset({ADMIN}),
}


def allowed(capability: str, roles: Iterable[str]) -> bool:
    """Whether someone holding `roles` may use `capability`; unknown capabilities are refused."""
    needed = PERMISSIONS.get(capability)
    if needed is None:
        return False
    held = set(roles) | {MEMBER}
    return ADMIN in held or bool(needed & held)


def required_roles(capability: str) -> list[str]:
    """The roles that grant a capability, most specific first (for refusal messages)."""
    order = [REVIEWER, AUDITOR, ADMIN]
    needed = PERMISSIONS.get(capability, frozenset({ADMIN})) | {ADMIN}
    return [role for role in order if role in needed]


def is_group(entry: str) -> bool:
    return entry.startswith("S")


class Roles:
    """Resolves a user's roles. `list_group_members(group_id) -> list[user_id]` is the Slack call
    (usergroups.users.list); group memberships are cached for `ttl` seconds. If a group cannot be
    resolved, its members get no role from it (refusing is the safe failure) and the error is logged."""

    def __init__(
        self,
        admins: Iterable[str] = (),
        reviewers: Iterable[str] = (),
        auditors: Iterable[str] = (),
        list_group_members: Callable[[str], list[str]] | None = None,
        ttl: float = 300.0,
    ):
        self.entries = {ADMIN: list(admins), REVIEWER: list(reviewers), AUDITOR: list(auditors)}
        self._list = list_group_members
        self.ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def _members(self, group: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group)
            if cached and now - cached[0] < self.ttl:
                return cached[1]
        if self._list is None:
            log.warning("user group %s is configured but no Slack client can resolve it", group)
            return frozenset()
        try:
            members = frozenset(self._list(group))
        except Exception as exc:  # noqa: BLE001 - a Slack outage must refuse, not crash the request
            log.error(
                "cannot list the members of user group %s (%s); treating it as empty for now", group, exc
            )
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group] = (now, members)
        return members

    def roles_of(self, user_id: str | None) -> frozenset[str]:
        roles = {MEMBER}
        if not user_id:
            return frozenset(roles)
        for role, entries in self.entries.items():
            for entry in entries:
                if entry == user_id or (is_group(entry) and user_id in self._members(entry)):
                    roles.add(role)
                    break
        return frozenset(roles)

    def can(self, user_id: str | None, capability: str) -> bool:
        return allowed(capability, self.roles_of(user_id))

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def describe(roles: Iterable[str]) -> str:
    named = [r for r in (ADMIN, REVIEWER, AUDITOR) if r in set(roles)]
    return ", ".join(named) if named else MEMBER
