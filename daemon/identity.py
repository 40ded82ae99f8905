"""The identity directory built from the configuration."""

from __future__ import annotations

from daemon.config import Config
from storage.identities import Directory, Org, ServiceUser, User


def build_directory(config: Config) -> Directory:
    """Every org, user and service user of `config`, and its launcher names, as one
    immutable directory."""
    return Directory.build(
        orgs=[Org(org.id, org.name) for org in config.orgs],
        users=[User(u.id, frozenset(u.orgs), frozenset(u.permissions)) for u in config.users],
        service_users=[
            ServiceUser(
                id=su.id,
                org_id=su.org,
                permissions=frozenset(su.permissions),
                token_hash=su.token_sha256,
            )
            for su in config.service_users
        ],
        bot_user_id=config.identity.bot_user_id,
        token_prefix=config.identity.token_prefix,
        launchers=config.named_launchers,
    )
