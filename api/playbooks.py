"""Devin v3 playbooks: list, create, read, replace and delete under `{base}/playbooks`.

Every route needs the ManageOrgPlaybooks permission in the path's org. Lists page by
cursor: `first` items after the cursor `after` (the previous page's `end_cursor`).
A deleted playbook disappears from every read; schedules that name it keep its id.
"""

from __future__ import annotations

from aiohttp import web

from api.auth import authorize
from api.body import parse_body, parse_query
from api.devin_models import DevinPlaybook, DevinPlaybookList, PlaybookListQuery, PlaybookWrite
from api.keys import CLOCK, STORE
from api.openapi import operation
from api.views import playbook_json, respond
from storage.domain import Playbook
from storage.enums import Permission

MANAGE = Permission.MANAGE_ORG_PLAYBOOKS
TAGS = ("playbooks",)


@operation(
    "List the org's playbooks, by cursor",
    query=PlaybookListQuery,
    response=DevinPlaybookList,
    tags=TAGS,
)
async def list_playbooks(request: web.Request) -> web.Response:
    org_id = request.match_info["org_id"]
    authorize(request, org_id, MANAGE)
    query = parse_query(request.query, PlaybookListQuery)
    store = request.app[STORE]
    items, has_next_page = await store.list_playbooks(
        org_id, first=query.first, after=query.after or None
    )
    return respond(
        DevinPlaybookList(
            items=[playbook_json(playbook) for playbook in items],
            end_cursor=items[-1].id if has_next_page else None,
            has_next_page=has_next_page,
            total=await store.count_playbooks(org_id),
        )
    )


@operation("Create a playbook", request=PlaybookWrite, response=DevinPlaybook, tags=TAGS)
async def create_playbook(request: web.Request) -> web.Response:
    org_id = request.match_info["org_id"]
    caller = authorize(request, org_id, MANAGE)
    body = await parse_body(request, PlaybookWrite)
    now = request.app[CLOCK].now()
    playbook = Playbook(
        org_id=org_id,
        title=body.title,
        body=body.body,
        macro=body.macro,
        created_at=now,
        updated_at=now,
        created_by=caller.id,
        updated_by=caller.id,
    )
    return respond(playbook_json(await request.app[STORE].create_playbook(playbook)))


@operation("Get a playbook", response=DevinPlaybook, errors=(404,), tags=TAGS)
async def get_playbook(request: web.Request) -> web.Response:
    org_id, playbook_id = request.match_info["org_id"], request.match_info["playbook_id"]
    authorize(request, org_id, MANAGE)
    playbook = await request.app[STORE].get_playbook(playbook_id, org_id=org_id)
    return respond(playbook_json(playbook))


@operation(
    "Replace a playbook's title, body and macro",
    request=PlaybookWrite,
    response=DevinPlaybook,
    errors=(404,),
    tags=TAGS,
)
async def replace_playbook(request: web.Request) -> web.Response:
    org_id, playbook_id = request.match_info["org_id"], request.match_info["playbook_id"]
    caller = authorize(request, org_id, MANAGE)
    body = await parse_body(request, PlaybookWrite)
    changes = {
        "title": body.title,
        "body": body.body,
        "macro": body.macro,
        "updated_by": caller.id,
        "updated_at": request.app[CLOCK].now(),
    }
    playbook = await request.app[STORE].update_playbook(playbook_id, changes, org_id=org_id)
    return respond(playbook_json(playbook))


@operation(
    "Delete a playbook; answers it as it was deleted",
    response=DevinPlaybook,
    errors=(404,),
    tags=TAGS,
)
async def delete_playbook(request: web.Request) -> web.Response:
    # The body is never read: clients send a JSON content type with an empty body.
    org_id, playbook_id = request.match_info["org_id"], request.match_info["playbook_id"]
    authorize(request, org_id, MANAGE)
    changes = {"deleted_at": request.app[CLOCK].now()}
    playbook = await request.app[STORE].update_playbook(playbook_id, changes, org_id=org_id)
    return respond(playbook_json(playbook))


def add_routes(app: web.Application, base: str) -> None:
    """The playbook routes under `base` (which holds `{org_id}`)."""
    collection, item = f"{base}/playbooks", f"{base}/playbooks/{{playbook_id}}"
    app.router.add_get(collection, list_playbooks)
    app.router.add_post(collection, create_playbook)
    app.router.add_get(item, get_playbook)
    app.router.add_put(item, replace_playbook)
    app.router.add_delete(item, delete_playbook)
