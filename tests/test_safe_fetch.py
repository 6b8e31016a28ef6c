"""vlmzoo.safe_fetch: SSRF refusals, pinned connections, redirects and limits (no network)."""

import datetime
import functools
import io
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from vlmzoo.errors import ImageError
from vlmzoo.images import load_image
from vlmzoo.safe_fetch import PUBLIC_ONLY, AddressPolicy, fetch, why_not_public

LOCAL = AddressPolicy(allow=frozenset({"127.0.0.1/32"}))  # the test server, nothing else
_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), (200, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body=b"", ctype="image/png", headers=(), length=True):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, data: bytes, seconds=3.0):
        end = time.monotonic() + seconds
        try:
            for b in data:
                if time.monotonic() > end:
                    return
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client gave up, as it should
            pass

    def do_GET(self):  # http.server's name
        self.server.seen.append((self.path, self.headers.get("Host")))
        port = self.server.server_address[1]
        path = self.path
        if path == "/cat.png":
            self._send(200, PNG)
        elif path == "/octet":
            self._send(200, PNG, ctype="application/octet-stream; charset=binary")
        elif path == "/redirect":
            self._send(302, headers=[("Location", "/cat.png")])
        elif path == "/redirect-chain":
            self._send(301, headers=[("Location", f"http://127.0.0.1:{port}/redirect")])
        elif path == "/to-other-loopback":
            self._send(307, headers=[("Location", f"http://127.0.0.2:{port}/cat.png")])
        elif path == "/to-metadata":
            self._send(302, headers=[("Location", "http://169.254.169.254/latest/meta-data?token=s3cret")])
        elif path == "/to-file":
            self._send(302, headers=[("Location", "file:///etc/passwd")])
        elif path == "/loop":
            self._send(302, headers=[("Location", "/loop")])
        elif path == "/big-declared":
            self._send(200, bytes(5000))
        elif path == "/big-undeclared":  # HTTP/1.0, no length: read until close
            self._send(200, bytes(5000), length=False)
        elif path == "/drip-body":
            self._send(200, length=False)
            self._drip(bytes(1000))
        elif path == "/drip-headers":
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            self._drip(b"X-Slow: " + b"a" * 1000)
        elif path == "/html":
            self._send(200, b"<html>nope</html>", ctype="text/html; charset=utf-8")
        else:
            self._send(404, b"not here", ctype="text/plain")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv, path):
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


@pytest.fixture
def connections(monkeypatch):
    """Every address fetch connects to, recorded (connections still go through)."""
    made = []

    def recording(address, *args, **kw):
        made.append(address)
        return _real_create_connection(address, *args, **kw)

    monkeypatch.setattr(socket, "create_connection", recording)
    return made


@pytest.fixture
def no_connections(monkeypatch):
    def refuse(address, *args, **kw):
        raise AssertionError(f"fetch tried to connect to {address}")

    monkeypatch.setattr(socket, "create_connection", refuse)


# --- the address policy, pure ---

@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800::1", "2a00:1450::1",
                                     "::ffff:93.184.216.34", "64:ff9b::5db8:d822"])
def test_public_addresses_pass(address):
    assert PUBLIC_ONLY.permits(address), why_not_public(address)


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("fd12:3456::1", "private"), ("169.254.169.254", "cloud metadata"), ("169.254.1.1", "link-local"),
    ("fd00:ec2::254", "cloud metadata"), ("fe80::1", "link-local"), ("100.64.0.1", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "IETF"), ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, a loopback"),
    ("::ffff:169.254.169.254", "IPv6 form of 169.254.169.254, the cloud metadata"),
    ("::127.0.0.1", "IPv6 form of 127.0.0.1"),  # IPv4-compatible
    ("64:ff9b::a00:1", "IPv6 form of 10.0.0.1, a private"),  # NAT64
    ("2002:a00:1::1", "IPv6 form of 10.0.0.1, a private"),  # 6to4
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "IPv6 form of 10.0.0.1, a private"),  # Teredo
])
def test_non_public_addresses_are_refused_with_a_reason(address, why):
    assert why in PUBLIC_ONLY.refusal(address)


def test_policy_allow_adds_exactly_the_given_networks():
    assert LOCAL.permits("127.0.0.1") and LOCAL.permits("8.8.8.8")
    assert not LOCAL.permits("127.0.0.2") and not LOCAL.permits("::ffff:127.0.0.1")
    assert all(not isinstance(n, str) for n in LOCAL.allow)  # strings became networks


# --- refusals before any connection ---

@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:{port}/cat.png", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/cat.png", "localhost resolves to"),
    ("http://[::1]/", "::1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data", "the cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"),
    ("http://10.0.0.1/", "a private address"),
    ("http://[::ffff:127.0.0.1]/", "IPv6 form of 127.0.0.1"),
    ("http://0.0.0.0:{port}/", "unspecified"),
    # the resolver reads these as 127.0.0.1; refused either way
    ("http://2130706433:{port}/", "loopback"),
    ("http://0x7f.1:{port}/", "loopback"),
    ("http://0177.0.0.1:{port}/", "loopback"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/cat.png", "only http and https"),
    ("http://user:pw@example.com/cat.png", "credentials in URLs are refused"),
    ("http:///cat.png", "without a host"),
    ("http://example.com:99999/", "malformed URL"),
    ("http://example.com/a b.png", "whitespace"),
])
def test_default_policy_refuses_before_connecting(server, no_connections, url, why):
    url = url.format(port=server.server_address[1])
    with pytest.raises(ImageError) as e:
        fetch(url)
    assert why in e.value.reason
    assert "pw" not in str(e.value)  # credentials never echoed
    assert server.seen == []


def test_a_host_resolving_to_any_private_address_is_refused(monkeypatch, no_connections):
    def fake(host, *args, **kw):
        if host == "mixed.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 80)) for ip in ("93.184.216.34", "10.1.2.3")]
        return _real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(ImageError, match="mixed.example resolves to a private address"):
        fetch("http://mixed.example/cat.png")


# --- mechanics, against the local server with a policy that allows it ---

def test_fetches_the_image(server, connections):
    assert fetch(_url(server, "/cat.png"), policy=LOCAL) == PNG
    assert fetch(_url(server, "/octet"), policy=LOCAL) == PNG
    assert connections == [("127.0.0.1", server.server_address[1])] * 2


def test_connects_to_the_checked_address_with_the_original_host_header(server, monkeypatch):
    """DNS answers once with a public address, then (rebinding) with a private one: the fetch
    must use the first answer and never ask again. The 'public' address is routed to the local
    server so nothing leaves the machine."""
    port = server.server_address[1]
    asked, dialled = [], []

    def fake_dns(host, *args, **kw):
        if host == "images.example":
            asked.append(host)
            ip = "93.184.216.34" if len(asked) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return _real_getaddrinfo(host, *args, **kw)

    def fake_dial(address, *args, **kw):
        dialled.append(address)
        assert address == ("93.184.216.34", port)
        return _real_create_connection(("127.0.0.1", port), *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    monkeypatch.setattr(socket, "create_connection", fake_dial)
    assert fetch(f"http://images.example:{port}/cat.png") == PNG
    assert asked == ["images.example"] and len(dialled) == 1
    assert server.seen == [("/cat.png", f"images.example:{port}")]


def test_follows_redirects_rechecking_each(server, connections):
    assert fetch(_url(server, "/redirect-chain"), policy=LOCAL) == PNG
    assert [p for p, _ in server.seen] == ["/redirect-chain", "/redirect", "/cat.png"]
    assert len(connections) == 3


@pytest.mark.parametrize("path, why", [
    ("/to-other-loopback", "redirected to http://127.0.0.2:{port}: 127.0.0.2 is a loopback address"),
    ("/to-metadata", "redirected to http://169.254.169.254: 169.254.169.254 is the cloud metadata address"),
    ("/to-file", "redirected to a URL with scheme 'file'"),
])
def test_redirect_to_a_refused_address_is_caught_before_connecting(server, connections, path, why):
    port = server.server_address[1]
    with pytest.raises(ImageError) as e:
        fetch(_url(server, path), policy=LOCAL)
    assert why.format(port=port) in e.value.reason
    assert "s3cret" not in str(e.value)  # the redirect's query is not echoed
    assert connections == [("127.0.0.1", port)]  # only the first hop


def test_too_many_redirects(server, connections):
    with pytest.raises(ImageError, match="more than 3 redirects"):
        fetch(_url(server, "/loop"), policy=LOCAL, max_redirects=3)
    assert len(connections) == 4


@pytest.mark.parametrize("path, why", [
    ("/big-declared", "is 5,000 bytes, over the limit of 1,000"),
    ("/big-undeclared", "is over the limit of 1,000 bytes"),
])
def test_size_limit(server, path, why):
    with pytest.raises(ImageError, match=why):
        fetch(_url(server, path), policy=LOCAL, max_bytes=1000)


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_slow_drip_hits_the_total_deadline(server, path):
    start = time.monotonic()
    with pytest.raises(ImageError, match=r"took longer than 0.5 s"):
        fetch(_url(server, path), policy=LOCAL, timeout=0.5)
    assert time.monotonic() - start < 1.5  # the drip would go on for 3 s


def test_wrong_content_type_and_http_errors(server):
    with pytest.raises(ImageError, match="is text/html, not an image"):
        fetch(_url(server, "/html"), policy=LOCAL)
    with pytest.raises(ImageError, match="HTTP 404 Not Found"):
        fetch(_url(server, "/nope.png"), policy=LOCAL)


def test_connection_refused_is_a_clean_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ImageError, match="download failed"):
            fetch(f"http://127.0.0.1:{port}/", policy=LOCAL)


# --- https: TLS to the pinned address, verified against the URL's host name ---

def _self_signed(name: str) -> tuple[bytes, bytes]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize("cert_name, ok", [("images.example", True), ("other.example", False)])
def test_https_verifies_the_url_host_on_the_pinned_connection(tmp_path, monkeypatch, cert_name, ok):
    cert, key = _self_signed(cert_name)
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads, srv.seen = True, []
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    port = srv.server_address[1]

    def fake_dns(host, *args, **kw):
        if host == "images.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
        return _real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **kw: _real_create_connection(("127.0.0.1", port), *a, **kw))
    client_ctx = ssl.create_default_context(cadata=cert.decode())
    try:
        if ok:
            assert fetch(f"https://images.example:{port}/cat.png", tls_context=client_ctx) == PNG
        else:
            with pytest.raises(ImageError, match="TLS certificate not accepted"):
                fetch(f"https://images.example:{port}/cat.png", tls_context=client_ctx)
    finally:
        srv.shutdown()
        srv.server_close()


# --- through images.load_image ---

def test_load_image_refuses_loopback_by_default(server):
    url = _url(server, "/cat.png")
    with pytest.raises(ImageError, match="127.0.0.1 is a loopback address") as e:
        load_image(url, allow_urls=True)
    assert e.value.source == url
    assert server.seen == []


def test_load_image_decodes_a_fetched_png_with_an_injected_fetcher(server):
    loaded = load_image(_url(server, "/redirect"), allow_urls=True,
                        fetch=functools.partial(fetch, policy=LOCAL))
    assert loaded.image.size == (6, 4) and loaded.image.getpixel((0, 0)) == (200, 0, 0)
    assert loaded.name == _url(server, "/redirect")


def test_load_image_redacts_credentials():
    with pytest.raises(ImageError) as e:
        load_image("https://alice:hunter2@example.com/cat.png", allow_urls=True)
    assert "hunter2" not in str(e.value) and e.value.source == "https://example.com/cat.png"
