"""HTTP for XEP-0363 uploads and XEP-0066 downloads, with `requests`: imported only when a file is
transferred (see [`simplexmpp.ext.upload.http_session()`][simplexmpp.ext.upload.http_session])."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool

from .. import errors
from ..errors import XMPPError
from .upload import HTTPTransferError, is_loopback_name

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client


class _LoopbackNamesAdapter(HTTPAdapter):
    """Connects `*.localhost` URLs to 127.0.0.1 (RFC 6761 §6.3: such names are loopback,
    whatever the resolver says; many resolvers know only `localhost` itself), keeping the
    name for the Host header, SNI and certificate checks. Other URLs are untouched."""

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: Any = None,
                                        cert: Any = None) -> HTTPConnectionPool:
        host = urlsplit(request.url or "").hostname
        if host is None or not is_loopback_name(host):
            # requests' own annotations (2.33+) say HTTPConnectionPool, the older
            # types-requests stubs its base ConnectionPool: the check suits both.
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            assert isinstance(pool, HTTPConnectionPool)
            return pool
        host_params, tls_kwargs = self.build_connection_pool_key_attributes(request, verify,
                                                                            cert)
        pool_kwargs: dict[str, Any] = dict(tls_kwargs)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host
            if verify is not False:
                pool_kwargs["assert_hostname"] = host
        host_params["host"] = "127.0.0.1"
        # Loopback is never sent through a proxy.
        pool = self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)
        assert isinstance(pool, HTTPConnectionPool)
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if is_loopback_name(urlsplit(request.url or "").hostname):
            return request.path_url
        return str(super().request_url(request, proxies))

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        parts = urlsplit(request.url or "")
        if is_loopback_name(parts.hostname):
            # The connection is to 127.0.0.1; the server must still see the name.
            request.headers["Host"] = parts.netloc.rpartition("@")[2]


class _Session(requests.Session):
    """A session whose own `verify` wins over `REQUESTS_CA_BUNDLE` and friends (plain
    requests lets the environment replace it when a call does not pass `verify`)."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> Any:
        if verify is None and self.verify is not True:
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class _ContextAdapter(_LoopbackNamesAdapter):
    """Uses an `ssl.SSLContext` of our own for HTTPS (see `_http_context`)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest,
                                             verify: Any, cert: Any = None) -> Any:
        host_params, tls_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        tls_kwargs.pop("ca_certs", None)
        tls_kwargs.pop("ca_cert_dir", None)
        tls_kwargs["ssl_context"] = self._context
        return host_params, tls_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Annotated in requests 2.33+, not in the types-requests stubs: called through a
        # typed name, so mypy --strict passes with either.
        verify_certificate: Callable[[Any, str, Any, Any], None] = super().cert_verify
        verify_certificate(conn, url, verify, cert)
        conn.ca_certs = conn.ca_cert_dir = None  # the context holds what to trust


def _http_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """A context for HTTPS that trusts what the client's own `ssl_context` was given.

    urllib3 changes the context it is handed (`check_hostname`, `verify_mode`), so the
    client's is never passed to it: the CA certificates loaded into it are copied into a
    fresh one (the system store when it holds none), with its minimum TLS version. Client
    certificates cannot be read back from a context and are not used for HTTP.
    """
    fresh = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=None)
    loaded = context.get_ca_certs(binary_form=True)
    if loaded:
        fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        fresh.load_verify_locations(cadata=b"".join(loaded))
    fresh.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
    return fresh


def http_session(client: Client) -> requests.Session:
    """A `requests.Session` with the client's TLS settings: `verify` is `client.ca_file`
    when set (else the default store), False only when the client has `verify=False`; with
    the client's own `ssl_context`, the CAs loaded into it (see `_http_context`); names
    under `.localhost` reach 127.0.0.1 (see `_LoopbackNamesAdapter`)."""
    session = _Session()
    context = getattr(client, "ssl_context", None)
    adapter: _LoopbackNamesAdapter
    if context is not None and client.verify:
        adapter = _ContextAdapter(_http_context(context))
    else:
        adapter = _LoopbackNamesAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if not client.verify:
        session.verify = False
    elif client.ca_file:
        session.verify = client.ca_file
    session.headers["User-Agent"] = "simplexmpp"
    return session


def transfer_error(exc: requests.RequestException, what: str, url: str,
                   cls: type[HTTPTransferError]) -> XMPPError:
    """The library's exception for a failed `requests` call."""
    if isinstance(exc, requests.Timeout):
        return errors.TimeoutError(f"{what}: the HTTP server at {urlsplit(url).netloc} did not "
                                   f"answer in time ({exc})")
    if isinstance(exc, requests.exceptions.SSLError):
        return cls(f"{what}: TLS with {urlsplit(url).netloc} failed ({exc}); pass ca_file= "
                   "to the Client if the server uses a private CA", url=url)
    return cls(f"{what}: {exc}", url=url)
