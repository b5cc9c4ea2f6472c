"""Login and logout of OAuth-protected upstream servers (app.runtime.upstream_oauth).

A login takes two calls, because a person stands between them: `begin_login` returns the URL to
open, `finish_login` takes the URL the browser was sent back to. The pending login lives in this
process between the two: the daemon's, when a face reaches it over HTTP.
"""

from __future__ import annotations

from app.core.changes import Change
from app.core.errors import Conflict, InvalidInput
from app.core.events import EventKind
from app.core.schemas import LoginStarted, ToolServerResponse
from app.ops.base import OpsBase
from app.runtime.connections import ConnectionSpec, NeedsLogin, open_connection
from app.runtime.server_state import ServerState
from app.runtime.upstream_oauth import (
    HTTP_TRANSPORTS,
    LOGIN_WAIT_S,
    Login,
    LoginError,
    StoredCredentials,
    revoke,
)
from storage.queries import add_event


class OAuthOperations(OpsBase):
    _logins: dict[str, Login]

    def _pending_logins(self) -> dict[str, Login]:
        if not hasattr(self, "_logins"):
            self._logins = {}
        return self._logins

    async def begin_login(self, ref: str, redirect_uri: str, *, actor: str) -> LoginStarted:
        async with self.db.read() as session:
            row = await self._server(session, ref)
            spec = ConnectionSpec.of(row)
            server_id = row.id
        if spec.transport not in HTTP_TRANSPORTS or not spec.url:
            raise InvalidInput(f"{spec.name} is a {spec.transport} server: it has no login")
        if not redirect_uri.startswith(("http://127.0.0.1:", "http://localhost:", "https://")):
            raise InvalidInput("use a loopback or https redirect URI", field="redirect_uri")

        async def connect(auth: object) -> None:
            async with open_connection(spec, startup_timeout=LOGIN_WAIT_S, auth=auth):  # type: ignore[arg-type]
                pass

        logins = self._pending_logins()
        previous = logins.pop(server_id, None)
        if previous is not None:
            await previous.cancel()
        login = Login(
            spec.name, spec.url, redirect_uri, StoredCredentials(self.db, server_id), connect
        )
        try:
            url = await login.start()
        except LoginError as exc:
            raise InvalidInput(str(exc)) from None
        logins[server_id] = login
        return LoginStarted(server=spec.name, authorization_url=url, redirect_uri=redirect_uri)

    async def finish_login(self, ref: str, redirect_url: str, *, actor: str) -> ToolServerResponse:
        server = await self.get_server(ref)
        login = self._pending_logins().pop(server.id, None)
        if login is None:
            raise Conflict(f"no login of {server.name} is waiting: run `tooldeck server login`")
        try:
            await login.finish(redirect_url)
        except LoginError as exc:
            await login.cancel()
            raise InvalidInput(str(exc)) from None
        except Exception as exc:
            await login.cancel()
            raise InvalidInput(f"login failed: {exc}") from None
        await self._record(server.id, EventKind.LOGGED_IN, f"logged in to {server.name}", actor)
        if self.runtime is not None and server.enabled:
            await self.runtime.restart(server.id, actor=actor)
        return await self.get_server(server.id)

    async def _record(self, server_id: str, kind: EventKind, message: str, actor: str) -> None:
        async with self.db.session() as session:
            add_event(session, server_id, kind, message, actor)

    async def logout_server(self, ref: str, *, actor: str) -> ToolServerResponse:
        async with self.db.read() as session:
            url = (await self._server(session, ref)).url
        server = await self.get_server(ref)
        credentials = StoredCredentials(self.db, server.id)
        outcome = await revoke(credentials, url or "")
        forgot = await credentials.forget()
        if forgot and self.runtime is not None and self.runtime.is_running(server.id):
            await self.runtime.stop(server.id, actor=actor)
        if forgot:
            await ServerState(self.db).needs_login(server.id, NeedsLogin(server.name).message)
            await self._record(server.id, EventKind.LOGGED_OUT, f"logged out: {outcome}", actor)
            self.changes.publish(Change.STATUS, server.id)
        return await self.get_server(server.id)
