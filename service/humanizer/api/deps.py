"""FastAPI dependencies: settings, the job store, bearer-token auth."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from humanizer.api.problems import UNAUTHORIZED, ProblemError
from humanizer.api.settings import ApiSettings
from humanizer.config import Settings
from humanizer.jobs.deadletters import DeadLetters
from humanizer.jobs.store import JobStore
from humanizer.redis_client import get_redis


@dataclass(frozen=True)
class Principal:
    """Who is calling: a short hash of the token (safe for logs and Redis keys), never the token."""

    token_id: str


ANONYMOUS = Principal("anonymous")


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


class TokenAuth:
    """The accepted bearer tokens; re-reads HUMANIZER_API_TOKENS_FILE when the mounted Secret changes."""

    RELOAD_EVERY = 5.0

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._tokens = [t.encode("utf-8") for t in settings.load_tokens()]
        self._file_mtime = self._mtime()
        self._checked = time.monotonic()

    @property
    def anonymous(self) -> bool:
        return not self._tokens and self.settings.allow_anonymous

    def _mtime(self) -> float | None:
        path = self.settings.tokens_file
        try:
            return os.stat(path).st_mtime if path else None
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        if self.settings.tokens_file is None or time.monotonic() - self._checked < self.RELOAD_EVERY:
            return
        with self._lock:
            self._checked = time.monotonic()
            mtime = self._mtime()
            if mtime is not None and mtime != self._file_mtime:
                self._file_mtime = mtime
                with contextlib.suppress(Exception):  # keep the tokens we have if the file is mid-update
                    self._tokens = [t.encode("utf-8") for t in self.settings.load_tokens()]

    def verify(self, presented: str | None) -> Principal | None:
        """The caller for ``presented``, or None. Compares against every token in constant time."""
        self._maybe_reload()
        if self.anonymous:
            return ANONYMOUS
        if not presented:
            return None
        candidate = presented.encode("utf-8")
        match = False
        for token in self._tokens:
            match |= hmac.compare_digest(candidate, token)
        return Principal(token_id(presented)) if match else None


bearer_scheme = HTTPBearer(auto_error=False, description="a token from HUMANIZER_API_TOKENS")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_api_settings_dep(request: Request) -> ApiSettings:
    return request.app.state.api_settings


def get_store(settings: Annotated[Settings, Depends(get_settings_dep)]) -> JobStore:
    return JobStore(get_redis(settings), prefix=settings.key_prefix, ttl_seconds=settings.result_ttl_seconds)


def get_dead_letters(store: Annotated[JobStore, Depends(get_store)]) -> DeadLetters:
    return DeadLetters(store)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(UNAUTHORIZED, detail, headers={"WWW-Authenticate": 'Bearer realm="humanizer"'})


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    auth: TokenAuth = request.app.state.auth
    if credentials is None and not auth.anonymous:
        raise _unauthorized("send 'Authorization: Bearer <token>'")
    principal = auth.verify(credentials.credentials if credentials else None)
    if principal is None:
        raise _unauthorized("the bearer token is not valid")
    return principal


def ops_guard(request: Request) -> None:
    """/healthz, /readyz and /metrics: open unless HUMANIZER_API_PROTECT_OPS_ENDPOINTS=true."""
    if not request.app.state.api_settings.protect_ops_endpoints:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    presented = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    auth: TokenAuth = request.app.state.auth
    if auth.verify(presented) is None:
        raise _unauthorized("this endpoint needs 'Authorization: Bearer <token>'")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ApiSettingsDep = Annotated[ApiSettings, Depends(get_api_settings_dep)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DeadLettersDep = Annotated[DeadLetters, Depends(get_dead_letters)]
PrincipalDep = Annotated[Principal, Depends(require_token)]
