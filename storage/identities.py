"""Who may do what: orgs, users and service users, as one immutable directory.

The directory is built from the configuration and swapped whole on reload, so every check
reads one consistent snapshot. Service users are found by the sha256 of their token, so a
token is never compared character by character and never kept in clear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.enums import Permission


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class User:
    id: str
    orgs: frozenset[str]
    permissions: frozenset[str]

    def can_use_sessions_in(self, org_id: str) -> bool:
        return org_id in self.orgs and Permission.USE_DEVIN_SESSIONS in self.permissions


@dataclass(frozen=True, slots=True)
class ServiceUser:
    id: str
    org_id: str
    permissions: frozenset[str]
    token_hash: str

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions


@dataclass(frozen=True, slots=True)
class Directory:
    """A snapshot of every identity agentcron knows, and of the launcher names a schedule
    may pick (they come from the same file and change with it, in the same swap)."""

    orgs: dict[str, Org] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    service_users_by_hash: dict[str, ServiceUser] = field(default_factory=dict)
    bot_user_id: str = "bot"
    token_prefix: str = "cog_"
    launchers: frozenset[str] = frozenset({"default"})

    @classmethod
    def build(
        cls,
        orgs: Iterable[Org],
        users: Iterable[User],
        service_users: Iterable[ServiceUser],
        *,
        bot_user_id: str = "bot",
        token_prefix: str = "cog_",
        launchers: Iterable[str] = ("default",),
    ) -> Directory:
        return cls(
            orgs={org.id: org for org in orgs},
            users={user.id: user for user in users},
            service_users_by_hash={su.token_hash: su for su in service_users},
            bot_user_id=bot_user_id,
            token_prefix=token_prefix,
            launchers=frozenset(launchers),
        )

    def service_user_for_token(self, token: str) -> ServiceUser | None:
        """The service user holding `token`, or None for a wrong prefix or an unknown token."""
        if not token.startswith(self.token_prefix):
            return None
        return self.service_users_by_hash.get(token_sha256(token))

    def run_as_refusal(self, user_id: str, org_id: str) -> str | None:
        """Why `user_id` may not run sessions in `org_id`, or None when it may."""
        user = self.users.get(user_id)
        if user is None or org_id not in user.orgs:
            return f"user '{user_id}' is not a member of organization '{org_id}'"
        if Permission.USE_DEVIN_SESSIONS not in user.permissions:
            return f"user '{user_id}' lacks the UseDevinSessions permission"
        return None

    def launcher_refusal(self, name: str) -> str | None:
        """Why a schedule may not pick the launcher `name`, or None when it may."""
        if name in self.launchers:
            return None
        known = ", ".join(sorted(self.launchers))
        return f"unknown launcher '{name}' (configured: {known})"


class DirectoryRef:
    """The current directory; the daemon swaps it on reload, readers see the new one at once."""

    def __init__(self, directory: Directory) -> None:
        self.current = directory
