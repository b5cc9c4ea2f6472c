"""OAuth 2.1 for upstream HTTP servers: tokens kept in the database, login, logout.

The SDK's `OAuthClientProvider` (an httpx auth) does discovery from a 401, dynamic client
registration, PKCE and refresh; we give it a `TokenStorage` backed by the `server_oauth` table.
While a server runs, nobody is there to open a browser: a 401 that refresh cannot answer makes
the provider ask for an authorization, and that request ends the start with `NeedsLogin`.
`Login` is the interactive flow behind `tooldeck server login`: it hands out the URL to open and
completes when the redirect it was sent to comes back (a loopback listener, or pasted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.utils import build_oauth_authorization_server_metadata_discovery_urls
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
)
from sqlalchemy import delete

from app import __version__
from app.runtime.connections import NeedsLogin, StartError
from storage.db import Database
from storage.models import ServerOAuth

HTTP_TRANSPORTS = ("streamable_http", "sse")
# How long a started login waits for the person to come back with the redirect.
LOGIN_WAIT_S = 600.0
REVOKE_TIMEOUT_S = 10.0


class _QuietNeedsLogin(logging.Filter):
    """The SDK logs an error with a traceback wherever an auth flow raises; a server that needs
    a login is an expected state, reported as its status, not a bug to log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        return not isinstance(error, NeedsLogin)


for _name in ("mcp.client.auth.oauth2", "mcp.client.streamable_http", "mcp.client.sse"):
    logging.getLogger(_name).addFilter(_QuietNeedsLogin())


def uses_oauth(spec: Any) -> bool:
    """An HTTP server whose headers do not already carry its credentials."""
    headers = {str(key).lower() for key, _value in (spec.headers or ())}
    return spec.transport in HTTP_TRANSPORTS and "authorization" not in headers


async def unattended_auth(spec: Any, db: Database, server_id: str) -> httpx2.Auth | None:
    """The auth of a server the supervisor runs: the SDK's provider once there are tokens to
    present and refresh; before that, only a watch for the 401 that asks for a login.

    The provider holds a lock from each request until its response's headers, which would
    queue the calls of every HTTP server behind each other's answers; only servers that use
    OAuth pay that."""
    if not uses_oauth(spec):
        return None
    credentials = StoredCredentials(db, server_id)
    if await credentials.has_tokens():
        return RunningAuth(spec.name, spec.url or "", credentials)
    return LoginWatch(spec.name)


class LoginWatch(httpx2.Auth):
    """Passes requests through untouched; a 401 that points to OAuth metadata (RFC 9728) means
    the server needs a login."""

    def __init__(self, name: str) -> None:
        self.login_needed = asyncio.Event()
        self.server_name = name

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and "resource_metadata=" in challenge:
            self.login_needed.set()
            raise NeedsLogin(self.server_name)


def client_metadata(redirect_uri: str) -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="tooldeck",
        software_id="tooldeck",
        software_version=__version__,
        redirect_uris=[redirect_uri],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )


class StoredCredentials:
    """The SDK's `TokenStorage` over one server's row of `server_oauth`."""

    def __init__(self, db: Database, server_id: str) -> None:
        self.db = db
        self.server_id = server_id

    async def _row(self) -> ServerOAuth | None:
        async with self.db.read() as session:
            return await session.get(ServerOAuth, self.server_id)

    async def get_tokens(self) -> OAuthToken | None:
        row = await self._row()
        return OAuthToken.model_validate_json(row.tokens) if row and row.tokens else None

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        row = await self._row()
        if row is None or not row.client_info:
            return None
        return OAuthClientInformationFull.model_validate_json(row.client_info)

    async def expires_at(self) -> float | None:
        row = await self._row()
        return row.expires_at if row else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        expires_at = time.time() + tokens.expires_in if tokens.expires_in is not None else None
        await self.save(tokens=tokens, expires_at=expires_at)

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self.save(client_info=client_info)

    async def save(
        self,
        *,
        tokens: OAuthToken | None = None,
        client_info: OAuthClientInformationFull | None = None,
        expires_at: float | None = None,
    ) -> None:
        async with self.db.session() as session:
            row = await session.get(ServerOAuth, self.server_id)
            if row is None:
                row = ServerOAuth(server_id=self.server_id)
                session.add(row)
            if client_info is not None:
                row.client_info = client_info.model_dump_json(exclude_none=True)
            if tokens is not None:
                row.tokens = tokens.model_dump_json(exclude_none=True)
                row.expires_at = expires_at

    async def has_tokens(self) -> bool:
        row = await self._row()
        return bool(row and row.tokens)

    async def forget(self) -> bool:
        """Delete the tokens and registration; True when there were any."""
        async with self.db.session() as session:
            result = await session.execute(
                delete(ServerOAuth).where(ServerOAuth.server_id == self.server_id)
            )
            return bool(getattr(result, "rowcount", 0))


class _Unattended:
    """Stored credentials as a running server uses them: refreshed tokens are kept, but a client
    registration it makes on its way to asking for a login is not. It cannot complete that
    login, and storing it would replace the registration a login in progress is about to save,
    leaving tokens that belong to another client."""

    def __init__(self, credentials: StoredCredentials) -> None:
        self.credentials = credentials
        self.registered: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return await self.credentials.get_tokens()

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await self.credentials.set_tokens(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.registered or await self.credentials.get_client_info()

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.registered = client_info


class RunningAuth(OAuthClientProvider):
    """The provider for a server that runs unattended: it refreshes, and never asks a person.

    `login_needed` is set when the server wants an authorization: the SDK's transports swallow
    an exception raised inside a request, so the start waits on this event as well.
    """

    def __init__(self, name: str, url: str, credentials: StoredCredentials) -> None:
        self.login_needed = asyncio.Event()
        self.credentials = credentials
        self.server_name = name

        async def no_person(_url: str) -> None:
            self.login_needed.set()
            raise NeedsLogin(name)

        async def no_callback() -> AuthorizationCodeResult:
            raise NeedsLogin(name)

        super().__init__(
            url,
            client_metadata("http://127.0.0.1/callback"),
            _Unattended(credentials),
            redirect_handler=no_person,
            callback_handler=no_callback,
        )

    async def _initialize(self) -> None:
        # The SDK keeps a token's expiry in memory only: without it a stored token that expired
        # while we were stopped would be presented, refused, and end in a login prompt instead
        # of a refresh.
        await super()._initialize()
        self.context.token_expiry_time = await self.credentials.expires_at()


class _PendingCredentials:
    """A login's registration and tokens, kept in memory until the login completes."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoginError(Exception):
    """A login that could not complete; the message is one line for a person."""


class Login:
    """One interactive login: `start` gives the URL to open, `finish` takes the redirect back.

    `connect` opens a connection with the given auth and initializes it: reaching an initialized
    session is what proves the tokens work, over either HTTP transport.
    """

    def __init__(
        self,
        name: str,
        url: str,
        redirect_uri: str,
        credentials: StoredCredentials,
        connect: Callable[[OAuthClientProvider], Awaitable[None]],
    ) -> None:
        self.name = name
        self.redirect_uri = redirect_uri
        self.credentials = credentials
        self.pending = _PendingCredentials()
        loop = asyncio.get_running_loop()
        self._url: asyncio.Future[str] = loop.create_future()
        self._answer: asyncio.Future[AuthorizationCodeResult] = loop.create_future()
        self.provider = OAuthClientProvider(
            url,
            client_metadata(redirect_uri),
            self.pending,
            redirect_handler=self._show,
            callback_handler=self._wait,
        )
        self._connect = connect
        self.task: asyncio.Task[None] | None = None

    async def _show(self, authorization_url: str) -> None:
        if not self._url.done():
            self._url.set_result(authorization_url)

    async def _wait(self) -> AuthorizationCodeResult:
        return await self._answer

    async def start(self) -> str:
        """Run the flow up to the authorization URL, and return it."""
        self.task = asyncio.create_task(self._run(), name=f"login:{self.name}")
        await asyncio.wait({self.task, self._url}, return_when=asyncio.FIRST_COMPLETED)
        if self._url.done():
            return self._url.result()
        self.task.result()  # raises why it ended
        raise LoginError(f"{self.name} accepted the connection without a login")

    async def _run(self) -> None:
        try:
            await self._connect(self.provider)
        except StartError as exc:
            raise LoginError(exc.message) from None
        if self.pending.tokens is None:
            raise LoginError(f"{self.name} did not ask for a login: it has no OAuth")

    async def finish(self, redirect_url: str) -> None:
        """Complete with the URL the browser was sent to; store the tokens on success."""
        self._answer.set_result(parse_redirect(redirect_url, self.redirect_uri))
        assert self.task is not None
        try:
            async with asyncio.timeout(LOGIN_WAIT_S):
                await self.task
        except TimeoutError:
            raise LoginError("the server did not complete the login in time") from None
        tokens, client_info = self.pending.tokens, self.pending.client_info
        assert tokens is not None
        await self.credentials.forget()
        expires_at = time.time() + tokens.expires_in if tokens.expires_in is not None else None
        await self.credentials.save(tokens=tokens, client_info=client_info, expires_at=expires_at)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self.task


def parse_redirect(redirect_url: str, redirect_uri: str) -> AuthorizationCodeResult:
    """The code and state of the redirect a browser was sent to, or why there are none."""
    parts = urlsplit(redirect_url.strip())
    expected = urlsplit(redirect_uri)
    if (parts.scheme, parts.netloc, parts.path) != (
        expected.scheme,
        expected.netloc,
        expected.path,
    ):
        raise LoginError(f"that is not the redirect to {redirect_uri}")
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    if "error" in query:
        why = query.get("error_description") or query["error"]
        raise LoginError(f"the authorization server refused: {why}")
    if not query.get("code"):
        raise LoginError("the redirect carries no authorization code")
    return AuthorizationCodeResult(
        code=query["code"], state=query.get("state"), iss=query.get("iss")
    )


async def revoke(credentials: StoredCredentials, server_url: str) -> str:
    """Revoke the stored tokens at the authorization server (RFC 7009), as far as it can be done:
    what happened, for a person. Forgetting them is the caller's job, whatever this says."""
    tokens, client = await credentials.get_tokens(), await credentials.get_client_info()
    if tokens is None or client is None or not client.client_id:
        return "no tokens to revoke"
    try:
        async with httpx2.AsyncClient(timeout=REVOKE_TIMEOUT_S, trust_env=False) as http:
            endpoint = await _revocation_endpoint(http, client.issuer, server_url)
            if endpoint is None:
                return "the authorization server offers no revocation; tokens forgotten here"
            form = {"client_id": client.client_id}
            basic: tuple[str, str] | None = None
            if client.client_secret and client.token_endpoint_auth_method == "client_secret_basic":
                basic = (client.client_id, client.client_secret)
            elif client.client_secret:
                form["client_secret"] = client.client_secret
            revoked = 0
            for token, hint in (
                (tokens.refresh_token, "refresh_token"),
                (tokens.access_token, "access_token"),
            ):
                if token:
                    answer = await http.post(
                        endpoint,
                        data={**form, "token": token, "token_type_hint": hint},
                        auth=basic or httpx2.USE_CLIENT_DEFAULT,
                    )
                    revoked += answer.status_code == 200
    except httpx2.HTTPError as exc:
        why = type(exc).__name__
        return f"could not reach the authorization server ({why}); tokens forgotten here"
    return "tokens revoked" if revoked else "the authorization server refused the revocation"


async def _revocation_endpoint(
    http: httpx2.AsyncClient, issuer: str | None, server_url: str
) -> str | None:
    for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, server_url):
        answer = await http.get(url)
        if answer.status_code != 200:
            continue
        try:
            metadata = OAuthMetadata.model_validate_json(answer.content)
        except ValueError:
            continue
        return str(metadata.revocation_endpoint) if metadata.revocation_endpoint else None
    return None
