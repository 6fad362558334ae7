"""
Serving a registry on C{[metrics] listen}: C{prometheus_client}'s Twisted
C{MetricsResource} at C{/metrics} on a twisted.web C{Site}, behind HTTP
basic auth when configured (TLS comes with an C{ssl:} endpoint string).
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from backupremote.metrics.config import MetricsConfig
from backupremote.reactors import IListeningReactor

_log = Logger(namespace="backupremote.metrics")


class _QuietSite(Site):
    """A scrape every few seconds is no news: no access log line, no factory noise."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


class _Index(Resource):
    """C{/}: where the metrics are."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"backupremote metrics: /metrics\n"


@implementer(IResource)
class BasicAuthGate:
    """C{wrapped}, for requests carrying C{username} and C{password} only (else 401)."""

    isLeaf = False

    def __init__(self, wrapped: Any, username: str, password: str) -> None:
        self._wrapped = wrapped
        token = base64.b64encode(f"{username}:{password}".encode("utf-8"))
        self._expected = b"Basic " + token

    def _allowed(self, request: Request) -> bool:
        given = request.getHeader(b"authorization") or b""
        return hmac.compare_digest(given, self._expected)

    def getChildWithDefault(self, name: bytes, request: Request) -> Any:
        if not self._allowed(request):
            return _Unauthorized()
        return self._wrapped.getChildWithDefault(name, request)

    def render(self, request: Request) -> bytes:
        if not self._allowed(request):
            return _Unauthorized().render(request)
        return self._wrapped.render(request)

    def putChild(self, path: bytes, child: Any) -> None:
        self._wrapped.putChild(path, child)


class _Unauthorized(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="backupremote metrics"')
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"authentication required\n"


def metricsRoot(registry: CollectorRegistry, username: str | None = None,
                password: str | None = None) -> Any:
    """The resource tree: C{/metrics} (C{MetricsResource}) and a small index."""
    # imported here: it imports the global reactor
    from prometheus_client.twisted import MetricsResource

    root = Resource()
    root.putChild(b"", _Index())
    root.putChild(b"metrics", MetricsResource(registry))
    if username is not None and password is not None:
        return BasicAuthGate(root, username, password)
    return root


class MetricsService(Service):
    """
    While running, serves C{registry} on C{config.listen}. A port that
    cannot be had is logged (the daemon goes on without metrics).
    """

    def __init__(self, reactor: IListeningReactor, config: MetricsConfig,
                 registry: CollectorRegistry) -> None:
        if config.listen is None:
            raise ValueError("no metrics.listen: nothing to serve")
        self.reactor = reactor
        self.config = config
        self.registry = registry
        self._listening: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        root = metricsRoot(self.registry, self.config.username, self.config.readPassword())
        endpoint = serverFromString(self.reactor, self.config.listen)
        self._listening = endpoint.listen(_QuietSite(root))
        self._listening.addCallbacks(self._announce, self._failed)

    def _announce(self, port: Any) -> Any:
        address = port.getHost()
        where = f"{address.host}:{address.port}" if hasattr(address, "port") else str(address)
        _log.info("metrics on http{s}://{where}/metrics{auth}",
                  s="s" if self.config.listen.startswith("ssl:") else "", where=where,
                  auth=" (basic auth)" if self.config.username else "")
        return port

    def _failed(self, failure: Any) -> None:
        _log.error("cannot serve metrics on {listen}: {error}", listen=self.config.listen,
                   error=str(failure.value))
        return None

    def whenListening(self) -> Deferred[Any]:
        """Fires with the listening port (C{None} if it could not listen)."""
        assert self._listening is not None, "the service is not running"
        result: Deferred[Any] = Deferred()
        self._listening.addCallback(lambda port: (result.callback(port), port)[1])
        return result

    def stopService(self) -> Deferred[None]:
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is None:
            return Deferred.fromCoroutine(_nothing())

        async def stop() -> None:
            port = await listening
            if port is not None:
                await maybeDeferred(port.stopListening)

        return Deferred.fromCoroutine(stop())


async def _nothing() -> None:
    return None
