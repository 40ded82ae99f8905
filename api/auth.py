"""Service-user authentication and permission checks of the Devin-style API."""

from __future__ import annotations

from aiohttp import web

from api.errors import ApiError
from api.keys import DIRECTORY
from storage.enums import Permission
from storage.identities import ServiceUser


def bearer_service_user(request: web.Request) -> ServiceUser:
    """The service user of the request's bearer token; 401 when missing, malformed or unknown."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Missing or malformed Authorization header (expected 'Bearer <token>')")
    service_user = request.app[DIRECTORY].current.service_user_for_token(token.strip())
    if service_user is None:
        raise ApiError(401, "Invalid or revoked API token")
    return service_user


def authorize(request: web.Request, org_id: str, *permissions: Permission) -> ServiceUser:
    """Authenticate, then require membership of `org_id` and every permission (else 403)."""
    return check_access(bearer_service_user(request), org_id, *permissions)


def check_access(service_user: ServiceUser, org_id: str, *permissions: Permission) -> ServiceUser:
    """`service_user` if it is of `org_id` and holds every permission; else 403."""
    if service_user.org_id != org_id:
        raise ApiError(403, f"This token has no access to organization '{org_id}'")
    for permission in permissions:
        if not service_user.has(permission):
            raise ApiError(403, f"This token lacks the {permission} permission")
    return service_user
