"""Fetch an http(s) image URL that an untrusted client gave, without letting it reach inside.

A URL from a client of ``vlmzoo serve`` must not make the server talk to itself, its private
network or a cloud metadata service (server-side request forgery). So each hop of a fetch:

1. accepts only http/https URLs without user:password@;
2. resolves the host once and refuses it if ANY address is not public (or allowed by the policy);
3. connects to exactly the addresses it checked, so a DNS answer that changes between check and
   connect (DNS rebinding) cannot sneak in; the Host header and the TLS name stay the URL's host,
   and certificates are verified as usual;
4. follows redirects itself, a few at most, running 1-3 again on every new URL.

Size, time (one deadline for the whole fetch, redirects and body included) and content type are
limited too. Every refusal is an ``ImageError`` naming the URL. Proxies ($HTTP_PROXY) are not used:
going through one would make the address checks meaningless.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from vlmzoo.errors import ImageError
from vlmzoo.urls import public_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_TIMEOUT = 20.0  # seconds for the whole fetch, not per socket operation
DEFAULT_MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A missing Content-Type is let through: the bytes still have to decode as an image.
ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
# Names of cloud metadata services; their addresses are refused anyway, this just says so early.
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.internal",
})
_CHUNK = 64 * 1024

# Ranges some Python versions still call global; none of them serves images on the internet.
_NOT_PUBLIC = (
    (ipaddress.ip_network("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA_ADDRESSES = frozenset(map(ipaddress.ip_address, ["169.254.169.254", "fd00:ec2::254"]))


def why_not_public(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public internet address ("a loopback address"), or None if it is."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        embedded = _embedded_ipv4(ip)
        if embedded is not None and (why := why_not_public(embedded)):
            return f"an IPv6 form of {embedded}, {why}"
        if embedded is not None and (ip.ipv4_mapped is not None or ip in _NAT64):
            return None  # these reach exactly the public IPv4 address they carry
    if ip in _METADATA_ADDRESSES:
        return "the cloud metadata address"
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.version == 6 and ip.is_site_local, "a site-local address"),
    )
    for hit, label in checks:
        if hit:
            return label
    for net, label in _NOT_PUBLIC:
        if ip.version == net.version and ip in net:
            return label
    if ip.is_reserved:  # before is_private, which also covers 240.0.0.0/4
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a special-purpose address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address; the server address is the relay's
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # 64:ff9b::a.b.c.d and ::a.b.c.d
        return low32
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a fetch may connect to: public ones, plus the networks in ``allow``.

    The default allows public addresses only. Tests (or an operator who really wants it) pass
    e.g. ``AddressPolicy(allow=frozenset({"127.0.0.1/32"}))``; strings are turned into networks.
    """

    allow: frozenset[IPNetwork] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "allow", frozenset(ipaddress.ip_network(n) for n in self.allow))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why a fetch may not connect to ``address``, or None when it may."""
        ip = ipaddress.ip_address(address)
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        return why_not_public(ip)

    def permits(self, address: str | IPAddress) -> bool:
        return self.refusal(address) is None


PUBLIC_ONLY = AddressPolicy()


def fetch(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    policy: AddressPolicy = PUBLIC_ONLY,
    tls_context: ssl.SSLContext | None = None,
) -> bytes:
    """GET an http(s) image URL safely and return its body.

    ``timeout`` bounds the whole fetch (connects, redirects, body), except the DNS look-ups,
    which the system resolver bounds. ``tls_context`` defaults to ssl.create_default_context().
    Raises ImageError(url, reason) on every refusal or failure.
    """
    source = redact(url)
    if max_redirects < 0 or max_bytes < 0 or timeout <= 0:
        raise ValueError("max_redirects and max_bytes must be >= 0 and timeout > 0")
    deadline = time.monotonic() + timeout
    tls_context = tls_context or ssl.create_default_context()
    current = url
    for hop in range(max_redirects + 1):
        target = _vet(current, policy, source, hop)
        location = _get(target, deadline, timeout, max_bytes, tls_context, source)
        if isinstance(location, bytes):
            return location
        current = urljoin(current, location)
    raise ImageError(source, f"more than {max_redirects} redirects")


def redact(url: str) -> str:
    """The URL fit for error messages and logs: no user:password@, no credential parameters
    (a presigned URL's signature included; ``urls.public_url``)."""
    return public_url(url)


@dataclass(frozen=True)
class _Target:
    https: bool
    host: str  # as in the URL, brackets stripped, lower case
    port: int
    path: str  # request target: path and query
    addresses: tuple[str, ...]  # resolved and checked; we connect to these and nothing else


def _vet(url: str, policy: AddressPolicy, source: str, hop: int) -> _Target:
    """Parse, resolve and check one URL; raise ImageError unless every address is allowed."""
    # After a redirect, name only where it went (scheme, host, port): its path and query may hold
    # a token the user never saw.
    where = "redirected to a URL" if hop else "URL"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ImageError(source, f"{where} with whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ImageError(source, f"malformed {where} ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ImageError(source, f"{where} with scheme {parts.scheme or '(none)'!r}; "
                                 "only http and https are fetched")
    if "@" in parts.netloc:
        raise ImageError(source, f"{where} with user:password@; credentials in URLs are refused")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ImageError(source, f"{where} without a host")
    https = parts.scheme == "https"
    port = (443 if https else 80) if port is None else port
    origin = f"{parts.scheme}://{parts.netloc}"
    prefix = f"redirected to {origin}: " if hop else ""
    refused = "; vlmzoo fetches only public addresses"
    if host in METADATA_HOSTS:
        raise ImageError(source, f"{prefix}{host} is a cloud metadata service{refused}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ImageError(source, f"{prefix}cannot resolve host {host!r} ({e})") from None
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))  # de-duplicated, order kept
    if not addresses:
        raise ImageError(source, f"{prefix}host {host!r} has no addresses")
    for address in addresses:
        why = policy.refusal(address.partition("%")[0])  # drop an IPv6 zone (fe80::1%eth0)
        if why:
            # a name's resolved address is not repeated back: to a client of the server it would
            # map internal DNS; the kind of address is enough to act on
            what = f"{address} is" if address == host else f"{host} resolves to"
            raise ImageError(source, f"{prefix}{what} {why}{refused}")
    safe = "/%:@!$&'()*+,;=-._~"  # keeps existing escapes and reserved characters as they are
    path = quote(parts.path or "/", safe=safe)
    if parts.query:
        path += "?" + quote(parts.query, safe=safe + "?")
    return _Target(https, host, port, path, addresses)


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to addresses already checked; Host header and TLS server name stay the URL's host."""

    def __init__(self, target: _Target, timeout: float, tls_context: ssl.SSLContext | None):
        self.default_port = 443 if tls_context else 80  # the Host header omits the default port
        super().__init__(target.host, target.port, timeout=timeout)
        self._addresses = target.addresses
        self._tls = tls_context
        # http.client drops self.sock once a response says it will close; we keep ours to set
        # read timeouts and to let the watchdog cut it.
        self.pinned_sock: socket.socket | None = None

    def connect(self):
        error: OSError | None = None
        for address in self._addresses:
            try:
                sock = socket.create_connection((address, self.port), self.timeout)
            except OSError as e:
                error = e
                continue
            if self._tls:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
                self.pinned_sock = sock  # before the handshake, so the watchdog can cut a stalled one
                sock.do_handshake()
            self.sock = self.pinned_sock = sock
            return
        raise error or OSError("no address to connect to")


def _get(target: _Target, deadline: float, timeout: float, max_bytes: int,
         tls_context: ssl.SSLContext, source: str) -> bytes | str:
    """One GET: the body as bytes, or the Location of a redirect as str."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ImageError(source, f"took longer than {timeout:g} s")
    conn = _PinnedConnection(target, remaining, tls_context if target.https else None)
    # Socket timeouts bound each read, not the total: a server dripping a byte at a time would
    # never trip them. The watchdog shuts the socket down at the deadline, whatever is blocked.
    expired = threading.Event()
    watchdog = threading.Timer(remaining, _cut, (conn, expired))
    watchdog.daemon = True
    watchdog.start()
    resp = None
    try:
        conn.request("GET", target.path, headers={
            "User-Agent": "vlmzoo", "Accept": "image/*", "Connection": "close",
        })
        resp = conn.getresponse()
        if resp.status in REDIRECT_STATUSES:
            location = resp.getheader("Location")
            if not location:
                raise ImageError(source, f"HTTP {resp.status} redirect without a Location")
            return location
        if not 200 <= resp.status < 300:
            raise ImageError(source, f"HTTP {resp.status} {resp.reason}".rstrip())
        _check_type(resp.getheader("Content-Type"), source)
        length = resp.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > max_bytes:
            raise ImageError(source, f"is {int(length):,} bytes, over the limit of {max_bytes:,}")
        return _read_body(resp, conn, deadline, max_bytes, expired, timeout, source)
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or time.monotonic() >= deadline:
            raise ImageError(source, f"took longer than {timeout:g} s") from None
        if isinstance(e, ssl.SSLCertVerificationError):
            raise ImageError(source, f"TLS certificate not accepted ({e.verify_message})") from None
        raise ImageError(source, f"download failed: {str(e) or type(e).__name__}") from None
    finally:
        watchdog.cancel()
        if resp is not None:
            resp.close()
        conn.close()


def _read_body(resp, conn, deadline, max_bytes, expired, timeout, source) -> bytes:
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or expired.is_set():
            raise ImageError(source, f"took longer than {timeout:g} s")
        conn.pinned_sock.settimeout(remaining)
        chunk = resp.read1(_CHUNK)  # read1: at most one socket read, so the clock is checked often
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise ImageError(source, f"is over the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    if expired.is_set():  # the watchdog's shutdown looks like an end of file
        raise ImageError(source, f"took longer than {timeout:g} s")
    return b"".join(chunks)


def _check_type(content_type: str | None, source: str) -> None:
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if not media.startswith(ACCEPTED_TYPES):
        raise ImageError(source, f"is {media or 'an empty content type'}, not an image "
                                 "(expected image/* or application/octet-stream)")


def _cut(conn: _PinnedConnection, expired: threading.Event) -> None:
    expired.set()
    sock = conn.pinned_sock
    if sock is not None:
        try:
            # the plain socket's shutdown: an SSLSocket's own would tear down TLS state that the
            # blocked reader is still using in the other thread
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_REDIRECTS", "DEFAULT_TIMEOUT", "PUBLIC_ONLY", "AddressPolicy",
    "fetch", "redact", "why_not_public",
]
