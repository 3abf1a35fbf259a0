"""URLs as first-class requests: parsed once, strictly, the same way for requests and rules.

A URL is split into scheme, userinfo, host, port and path. The host is normalised: lower case,
IDNA (punycode) for non-ASCII names (full-width dots and digits included), one trailing dot
dropped, and IP literals put in canonical form whatever their spelling: ``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``, ``[::1]`` (the ``inet_aton``
rules browsers and curl apply). Anything ambiguous between parsers (backslashes, blanks,
control characters, two ``@``) is refused rather than guessed.

Hosts are then classed: *metadata* (cloud instance metadata) and *link-local* addresses are
always denied; *loopback* and *private* addresses (and ``localhost``, ``*.local``,
``*.internal``) need a rule that names them exactly; everything else is *public*.
A name that *resolves* to a private address (DNS rebinding) cannot be seen here: only the
sandbox, which pins the address it connects to, can stop that.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL = 8192
NETWORK_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)
METADATA_IPS = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "100.100.100.200",
        "168.63.129.16",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
    )
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
PRIVATE_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".lan",
    ".home.arpa",
    ".intranet",
    ".corp",
    ".localdomain",
)
_EMBEDDING_DNS = (".nip.io", ".sslip.io", ".xip.io", ".traefik.me", ".localtest.me", ".lvh.me")
"""Public wildcard-DNS names that resolve to an address spelled inside the name."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_CHARS = re.compile(r"^[a-z0-9_.-]+$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_EMBEDS_V4 = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96")
)
"""NAT64 and IPv4-translated prefixes: the low 32 bits are an IPv4 address."""


@dataclass(frozen=True, slots=True)
class Url:
    """A parsed URL (``problem`` set when it is malformed; then nothing else is reliable).

    Attributes:
        raw: the URL as given.
        scheme: lower case.
        userinfo: the ``user:password`` part, if any.
        host: the normalised host (canonical IP text for IP literals, no brackets).
        port: the explicit port, or None.
        path: for ``file:`` URLs, the percent-decoded path; otherwise the raw path and query.
        ip: the host as an address, when it is an IP literal.
        problem: why the URL is refused (``""`` when it parsed).
    """

    raw: str
    scheme: str = ""
    userinfo: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""
    ip: IPAddress | None = None
    problem: str = ""

    @property
    def effective_port(self) -> int | None:
        """The port connected to: explicit, or the scheme's default."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)


def parse(raw: object) -> Url:
    """Parse a URL strictly; a non-string or ambiguous URL comes back with ``problem`` set."""
    if not isinstance(raw, str):
        return Url(repr(raw)[:80], problem=f"a URL must be a string, not {type(raw).__name__}")
    if not raw:
        return Url(raw, problem="empty URL")
    if len(raw) > MAX_URL:
        return Url(raw[:80], problem=f"URL longer than {MAX_URL} characters")
    if any(ord(c) <= 32 or ord(c) == 127 or c == "\\" for c in raw):
        return Url(raw, problem="blank, control character or backslash in URL")
    m = _SCHEME.match(raw)
    if m is None:
        return Url(raw, problem="URL without a scheme")
    scheme = m.group(1).lower()
    rest = raw[m.end() :]
    if scheme == "file":
        return _file_url(raw, rest)
    if not rest.startswith("//"):
        return Url(raw, scheme, problem=f"{scheme}: URL without //host")
    rest = rest[2:]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    userinfo = ""
    if "@" in authority:
        if authority.count("@") > 1:
            return Url(raw, scheme, problem="more than one '@' in the URL's authority")
        userinfo, authority = authority.split("@")
    host_text, port, problem = _split_port(authority)
    if problem:
        return Url(raw, scheme, userinfo, problem=problem)
    host, ip, problem = normalise_host(host_text)
    if problem:
        return Url(raw, scheme, userinfo, problem=problem)
    return Url(raw, scheme, userinfo, host, port, path, ip)


def _file_url(raw: str, rest: str) -> Url:
    path = rest.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("//"):
        host, slash, tail = path[2:].partition("/")
        if host.lower() not in ("", "localhost"):
            return Url(raw, "file", problem="file: URL naming another host")
        path = slash + tail
    decoded = unquote(path, errors="surrogateescape")
    if "\x00" in decoded:
        return Url(raw, "file", problem="NUL byte in file: URL")
    if not decoded:
        return Url(raw, "file", problem="file: URL without a path")
    return Url(raw, "file", path=decoded)


def _split_port(authority: str) -> tuple[str, int | None, str]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return "", None, "unbalanced '[' in URL host"
        host, tail = authority[: end + 1], authority[end + 1 :]
        if tail and not tail.startswith(":"):
            return "", None, "junk after ']' in URL host"
        port_text = tail[1:]
    else:
        if authority.count(":") > 1:
            return "", None, "more than one ':' in URL host (IPv6 needs brackets)"
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, None, ""
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        return "", None, f"invalid port {port_text!r}"
    return host, int(port_text), ""


@functools.lru_cache(maxsize=4096)
def normalise_host(text: str) -> tuple[str, IPAddress | None, str]:
    """``(host, ip, problem)``: the canonical host of a URL or a rule."""
    host = text
    if "%" in text and not text.startswith("["):
        try:
            host = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return "", None, f"invalid percent-encoding in host {text!r}"
    if not host:
        return "", None, "URL without a host"
    if host.startswith("["):
        if not host.endswith("]"):
            return "", None, "unbalanced '[' in host"
        inner = host[1:-1].split("%", 1)[0]  # drop a zone id (fe80::1%eth0)
        try:
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            return "", None, f"invalid IPv6 address {inner!r}"
        return ip6.compressed, ip6, ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as e:
            return "", None, f"invalid international host name ({e})"
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or not _HOST_CHARS.match(host) or ".." in host or host.startswith("."):
        return "", None, f"invalid host {text!r}"
    if ":" not in host and _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        ip4 = _inet_aton(host)
        if ip4 is None:
            return "", None, f"invalid IPv4 address {text!r}"
        return str(ip4), ip4, ""
    try:  # a bare IPv6 (rules may write ::1 without brackets)
        ip6 = ipaddress.IPv6Address(host)
    except ValueError:
        return host, None, ""
    return ip6.compressed, ip6, ""


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 the way inet_aton reads it: 1-4 parts, each decimal, octal (0...) or hex (0x...)."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for p in parts:
        if not p:
            return None
        try:
            if p.startswith("0x"):
                v = int(p[2:] or "0", 16)
            elif p.startswith("0") and len(p) > 1:
                v = int(p, 8)
            else:
                v = int(p, 10)
        except ValueError:
            return None
        values.append(v)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def classify(url: Url) -> str:
    """``metadata``, ``link-local``, ``loopback``, ``private`` or ``public``."""
    return classify_host(url.host, url.ip)


@functools.lru_cache(maxsize=4096)
def classify_host(host: str, ip: IPAddress | None) -> str:
    """The class of a normalised host (see the module doc)."""
    if ip is None:
        if host in METADATA_HOSTS:
            return "metadata"
        if host in LOOPBACK_NAMES or host.endswith(".localhost"):
            return "loopback"
        for suffix in _EMBEDDING_DNS:
            if host.endswith(suffix):
                embedded = _embedded_ip(host[: -len(suffix)])
                return classify_host(str(embedded), embedded) if embedded else "private"
        if host.endswith(PRIVATE_SUFFIXES) or "." not in host:
            return "private"  # a single-label name resolves on the local network
        return "public"
    worst = "public"
    for addr in _addresses(ip):
        cls = _classify_ip(addr)
        if _SEVERITY[cls] > _SEVERITY[worst]:
            worst = cls
    return worst


_SEVERITY = {"public": 0, "private": 1, "loopback": 2, "link-local": 3, "metadata": 4}


def _addresses(ip: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address embedded in it (mapped, 6to4, NAT64, Teredo ...)."""
    out: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            out.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            out.append(ip.sixtofour)
        if ip.teredo is not None:
            out.extend(ip.teredo)
        packed = int(ip)
        if packed >> 32 == 0 or any(ip in net for net in _EMBEDS_V4):  # and ::a.b.c.d
            out.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    return out


def _classify_ip(ip: IPAddress) -> str:
    if ip in METADATA_IPS:
        return "metadata"
    if ip.is_link_local:
        return "link-local"
    if ip.is_loopback or ip.is_unspecified or (ip.version == 4 and int(ip) >> 24 == 0):
        return "loopback"  # 0.0.0.0/8 reaches the local host on Linux
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return "private"
    return "public"


def _embedded_ip(label: str) -> IPAddress | None:
    """``10.0.0.1.nip.io``, ``10-0-0-1.sslip.io``, ``app.127.0.0.1.nip.io``: the address."""
    for candidate in (label, label.replace("-", ".")):
        tail = ".".join(candidate.split(".")[-4:])
        try:
            return ipaddress.IPv4Address(tail)
        except ValueError:
            continue
    return None


@dataclass(frozen=True, slots=True)
class HostPattern:
    """A rule's ``host``: an exact host or ``*.example.com`` (subdomains), optional ``:port``."""

    host: str
    wildcard: bool
    port: int | None

    def matches(self, url: Url) -> bool:
        """Does the URL's host (and port) fall under this pattern?"""
        if self.port is not None and url.effective_port != self.port:
            return False
        if self.port is None and url.port not in (None, DEFAULT_PORTS.get(url.scheme)):
            return False  # a rule without a port covers the scheme's default port only
        if self.wildcard:
            return url.ip is None and url.host.endswith("." + self.host)
        return url.host == self.host

    @property
    def names_exactly(self) -> bool:
        """Does it name one host (no wildcard), as private and loopback hosts require?"""
        return not self.wildcard


@functools.lru_cache(maxsize=4096)
def compile_host(pattern: str) -> HostPattern:
    """Parse a rule's ``host``; raises ``ValueError`` naming the problem."""
    text = pattern.strip()
    wildcard = text.startswith("*.")
    if wildcard:
        text = text[2:]
    if "*" in text or "/" in text or "@" in text:
        raise ValueError(f"host {pattern!r}: use an exact host or '*.example.com'")
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address
    host_text, port, problem = _split_port(text)
    if not problem:
        host, ip, problem = normalise_host(host_text)
    if problem:
        raise ValueError(f"host {pattern!r}: {problem}")
    if wildcard and ip is not None:
        raise ValueError(f"host {pattern!r}: a wildcard cannot cover IP addresses")
    return HostPattern(host, wildcard, port)
