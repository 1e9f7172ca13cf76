"""Operator-only routes: a bearer token (ADMIN_TOKEN), compared in constant time.

Without ADMIN_TOKEN a process does not serve those routes at all. A refused attempt is
logged with the route and the client's address, never with the token sent.
"""

import hmac
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from pydantic import SecretStr

from src.settings import CommonSettings
from src.web import error_responses, get_settings

logger = logging.getLogger(__name__)

ADMIN_ERRORS = error_responses(
    401,
    descriptions={401: "no valid `Authorization: Bearer <ADMIN_TOKEN>` header"},
)


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer <token>` header; empty when there is none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_matches(given: str, expected: SecretStr) -> bool:
    # compare_digest: the time taken does not tell how much of the token was right.
    return bool(given) and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


async def require_admin(
    request: Request, settings: Annotated[CommonSettings, Depends(get_settings)]
) -> None:
    expected: SecretStr | None = getattr(settings, "admin_token", None)
    given = bearer_token(request)
    if expected is not None and token_matches(given, expected):
        return
    client = request.client.host if request.client else "-"
    logger.warning(
        "refused %s %s from %s: %s bearer token",
        request.method,
        request.url.path,
        client,
        "a wrong" if given else "no",
    )
    raise HTTPException(
        status_code=401,
        detail="this route needs the operator's token: Authorization: Bearer <ADMIN_TOKEN>",
        headers={"WWW-Authenticate": "Bearer"},
    )


ADMIN_ONLY = [Depends(require_admin)]
