"""What the routes take from the app: its services, and who is asking (authentication).

Credentials travel per request, either as `X-User` + `X-Password` headers or as
`Authorization: Bearer <token>` with a token from POST /api/session. Reads are open when the
environment's config says so (`open_reads`, on in local); writes always need a user, and an
electronic signature re-authenticates its signer on top of that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from pharma_manufacturing.services.batches import BatchRecords
from pharma_manufacturing.services.credentials import User, UserDirectory
from pharma_manufacturing.services.deviations import DeviationRecords
from pharma_manufacturing.services.errors import AuthenticationError
from pharma_manufacturing.services.genealogy import Genealogy
from pharma_manufacturing.services.release import BatchRelease
from pharma_manufacturing.services.steps import StepRecords
from pharma_manufacturing.settings import Settings
from pharma_manufacturing.storage.database import Database

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """The record services of one app instance, built once in `create_app`."""

    database: Database
    users: UserDirectory
    batches: BatchRecords
    steps: StepRecords
    release: BatchRelease
    deviations: DeviationRecords
    genealogy: Genealogy

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run a read service method from an async route (see Database.read)."""
        return await self.database.read(query, *args)


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def authenticated_user(
    request: Request,
    x_user: Annotated[str | None, Header()] = None,
    x_password: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> User:
    """The user the request's credentials name; AuthenticationError (401) otherwise."""
    users: UserDirectory = request.app.state.services.users
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return users.authenticate_token(token.strip())
    if x_user and x_password:
        return users.authenticate(x_user, x_password)
    raise AuthenticationError(
        "sign in first: send X-User and X-Password, or Authorization: Bearer <token> "
        "from POST /api/session"
    )


async def reader(
    request: Request,
    x_user: Annotated[str | None, Header()] = None,
    x_password: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> User | None:
    """Who reads: nobody needs to say when reads are open (`open_reads`), else a user.

    Async, so an open read never leaves the event loop; a password check (scrypt) does.
    """
    settings: Settings = request.app.state.settings
    if settings.open_reads:
        return None
    return await run_in_threadpool(authenticated_user, request, x_user, x_password, authorization)


ServicesDep = Annotated[Services, Depends(services)]
Writer = Annotated[User, Depends(authenticated_user)]
Reader = Annotated[User | None, Depends(reader)]
