"""`mfa-console serve`: the verification service over HTTP, for web apps, softphones and VPNs.

The API speaks privacyIDEA's shapes (`POST /validate/check` with `user` and `pass`, form or
JSON; the answer's `result.value` and `result.authentication`), so clients written for it
work unchanged once they send our API key in `Authorization` (`Bearer KEY` or the key alone).
Every rule stays the store's: replay, lockout, policy; every check is audited under the
client's name. A locked user, an unknown one and a wrong code get the same REJECT.

Store calls are blocking (SQLite, psycopg): they run in a thread pool, never on the event
loop. SIGTERM stops accepting, finishes the checks under way, then exits.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version

from aiohttp import web

from store.clients import Client
from store.errors import StoreError
from store.models import AuthResult, Outcome
from store.service import Service

MAX_BODY = 16 * 1024  # a check is a name and a code: anything bigger is refused (413) unread
SHUTDOWN_SECONDS = 10  # SIGTERM: how long the checks under way may take to finish
_VERSION = f"mfa-console {version('mfa-console')}"


@dataclass
class Bucket:
    """A token bucket: `rate` requests a second, bursts of `rate * 2`."""

    rate: float
    tokens: float = math.inf
    at: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.rate * 2, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Limits:
    """Requests per second, per client and per source address (answered 429 with Retry-After)."""

    def __init__(self, per_client: float, per_source: float):
        self.per_client, self.per_source = per_client, per_source
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._lock = threading.Lock()  # taken by the event loop and the store's threads

    def wait(self, kind: str, who: str) -> float:
        with self._lock:
            return self._wait(kind, who)

    def _wait(self, kind: str, who: str) -> float:
        if len(self._buckets) > 100_000:  # a scan from many addresses: forget the buckets idle long
            now = time.monotonic()  # enough to be full again (2 s), which a new bucket is too
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < 2.0}
        rate = self.per_client if kind == "client" else self.per_source
        return self._buckets.setdefault((kind, who), Bucket(rate)).take()


@dataclass(frozen=True)
class _Refusal:
    """An error answer decided in the store's threads, made into a response on the event loop."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def _answer(status: int = 200, **result) -> web.Response:
    body = {"id": 1, "jsonrpc": "2.0", "version": _VERSION, "time": time.time(), **result}
    return web.json_response(body, status=status)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = _answer(status, result={"status": False, "error": {"code": status, "message": message}})
    response.headers.update(headers or {})
    return response


class Verifier:
    # Threads waiting on the store are what group commit batches: 16 checks a commit at most
    # (8 gave 900 checks a second here, 16 gave 1,150, 32 and 64 no more).
    def __init__(self, service: Service, limits: Limits, threads: int = 16):
        self.service, self.limits = service, limits
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store")

    async def run(self, call: Callable, *args):
        """A store call, in the pool's threads (never on the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def _key(self, request: web.Request) -> str | web.Response:
        """The request's API key, or the response that refuses the request before any store call."""
        wait = self.limits.wait("source", request.remote or "")
        if wait:
            return _error(429, "too many requests from this address", {"Retry-After": str(math.ceil(wait))})
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not key:
            return _error(401, "an API key is needed (Authorization: Bearer KEY); see `mfa-console clients add`",
                          {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return key

    def _client(self, key: str, source: str) -> Client | _Refusal:
        """The key's client, or why it is refused (in the store's threads)."""
        client = self.service.client_for_key(key, source)
        if client is None:
            return _Refusal(403, "this API key is not valid here", {"WWW-Authenticate": "Bearer"})
        wait = self.limits.wait("client", client.name)
        if wait:
            return _Refusal(429, "too many requests from this client", {"Retry-After": str(math.ceil(wait))})
        return client

    async def _in_store(self, request: web.Request, key: str, then: Callable[[Client], object]):
        """The client of `key`, then `then(client)`, in one trip to the store's threads; a refusal
        of either, as its response."""

        def both():
            client = self._client(key, request.remote or "")
            return client if isinstance(client, _Refusal) else then(client)

        answer = await self.run(both)
        return _error(answer.status, answer.message, answer.headers) if isinstance(answer, _Refusal) else answer

    async def check(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        params = await _params(request)

        def verify(client: Client) -> AuthResult | _Refusal:
            if isinstance(params, _Refusal):  # said once the key is known good: a stranger learns nothing
                return params
            user, code = params.get("user"), params.get("pass")
            if not isinstance(user, str) or not isinstance(code, str) or not user:
                return _Refusal(400, "give 'user' and 'pass' (the code or a recovery code)")
            return self.service.verify(user, code, actor=f"client:{client.name}")

        result = await self._in_store(request, key, verify)
        if isinstance(result, web.Response):
            return result
        accepted = result.outcome is Outcome.OK
        if result.outcome is Outcome.NOT_ENROLLED:
            detail = "no code to check: the user has no active 2FA (see /validate/preauth)"
        else:
            detail = "matching code" if accepted else "wrong code"  # locked, unknown, replayed: said in the audit
        return _answer(result={"status": True, "value": accepted, "authentication": "ACCEPT" if accepted else "REJECT"},
                       detail={"message": detail})  # fmt: skip

    async def preauth(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if isinstance(key, web.Response):
            return key
        user = request.query.get("user", "")
        second = await self._in_store(request, key, lambda _: self.service.second_factor(user) if user else
                                      _Refusal(400, "give 'user'"))  # fmt: skip
        if isinstance(second, web.Response):
            return second
        messages = {"code": "a code is needed", "enroll": "the user must enroll first", "off": "2FA is off: no code"}
        return _answer(result={"status": True, "value": second}, detail={"message": messages[second]})

    async def health(self, request: web.Request) -> web.Response:
        try:
            await self.run(self.service.policy)
        except StoreError as exc:
            return web.json_response({"status": "unavailable", "message": str(exc)}, status=503)
        return web.json_response({"status": "ok"})

    def close(self) -> None:
        self._pool.shutdown(wait=True)


async def _params(request: web.Request) -> dict | _Refusal:
    """The request's parameters: JSON or a form (privacyIDEA's clients send either)."""
    try:
        if request.content_type != "application/json":
            try:
                return dict(await request.post())
            except ValueError:  # bytes that are not UTF-8 among them
                return _Refusal(400, "the body is not a valid form (application/x-www-form-urlencoded, UTF-8)")
        try:
            params = json.loads(await request.read())
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            return _Refusal(400, "the body is not valid JSON")
        return params if isinstance(params, dict) else _Refusal(400, "the JSON body must be an object")
    except web.HTTPRequestEntityTooLarge:
        return _Refusal(413, f"the body is over {MAX_BODY} bytes")


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StoreError as exc:  # busy, unreachable, damaged: no answer is a REJECT's equal
        return _error(503, str(exc))
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason)


def make_app(verifier: Verifier) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors])
    app.router.add_post("/validate/check", verifier.check)
    app.router.add_get("/validate/preauth", verifier.preauth)
    app.router.add_get("/healthz", verifier.health)
    return app


def serve(service: Service, *, host: str, port: int, socket_path: str | None, tls: ssl.SSLContext | None,
          limits: Limits, radius: tuple[str, int] | None = None) -> None:  # fmt: skip
    """Runs until SIGTERM or SIGINT; says where it listens on stdout (a line each), then serves."""
    asyncio.run(_serve(service, host, port, socket_path, tls, limits, radius))


async def _serve(service, host, port, socket_path, tls, limits, radius) -> None:
    verifier = Verifier(service, limits)
    radius_server = None
    if radius is not None:
        from .radius import RadiusServer  # pyrad loads for --radius only

        radius_server = RadiusServer(service, verifier.run, radius[1])
        radius_port = await radius_server.start(radius[0])
    runner = web.AppRunner(make_app(verifier), handle_signals=False, access_log=None,
                           shutdown_timeout=SHUTDOWN_SECONDS)  # fmt: skip
    await runner.setup()
    if socket_path:
        site = web.UnixSite(runner, socket_path, ssl_context=tls)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheme = "https" if tls else "http"
    where = socket_path or ":".join(map(str, site._server.sockets[0].getsockname()[:2]))
    print(f"listening on {scheme}://{where}", flush=True)
    if radius_server is not None:
        print(f"listening on radius://{radius[0]}:{radius_port}", flush=True)
    try:
        await stop.wait()
    finally:
        if radius_server is not None:
            await radius_server.stop()
        await runner.cleanup()  # stops listening, lets the checks under way finish
        verifier.close()
        print("stopped", file=sys.stderr, flush=True)
