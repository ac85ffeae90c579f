"""The drill endpoint's access check: only a drill key may call POST /drill/faults.

The operational endpoints themselves (liveness, readiness, metrics, version, the drill
endpoint) come from ops_kit.operations; what is finance-trading's own is who may run a drill.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Header, HTTPException, Request
from ops_kit.operations import drill_router

from finance_trading.middleware.auth import ApiKeys, drill_holder
from finance_trading.settings import Settings

logger = logging.getLogger("finance_trading")


async def drill_access(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> str:
    """Every /drill/ route: 404 unless APP_DRILL_ENDPOINT is on, as if the route did not
    exist; then a drill key (`drill_keys`, APP_DRILL_KEYS_FILE) in X-API-Key, else 401 (no
    key, unknown key) or 403 (a trading key). Checked before the body is read: a refused
    call changes nothing. Answers who holds the key."""
    settings: Settings = request.app.state.settings
    if not settings.drill_endpoint:
        raise HTTPException(status_code=404, detail="Not Found")
    drill_keys: ApiKeys = request.app.state.drill_keys
    api_keys: ApiKeys = request.app.state.api_keys
    return drill_holder(x_api_key, drill_keys, api_keys)


def _audit(holder: str) -> dict[str, object]:
    """The "drill faults set" log line names the drill key's holder."""
    return {"drill_key": holder}


# Every route of this router is a drill: the check above is on the router, not on each route.
drills = drill_router(drill_access, _audit, logger)
