"""Credentials in URLs: nothing vlmzoo stores or shows ever holds them.

A URL may carry a credential: ``https://user:password@host/v1``, or a query parameter such as
``?api_key=`` / ``?token=`` / ``X-Amz-Signature=``. Requests use the URL as given; everything
vlmzoo stores or shows (run configs and ids, model names and reprs, error messages, image names,
compare and report) uses ``public_url``, which drops the user name and password and every
credential-like parameter.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# a query parameter is a credential if its name (lower case, "-" and "." read as "_") is one of
# these, or ends in one of the suffixes: api_key, apikey, x-api-key, access_token, client_secret...
CREDENTIAL_PARAMS = frozenset({"key", "token", "auth", "authorization", "password", "passwd", "pwd", "pass",
                               "secret", "sig", "signature", "credential", "credentials", "session",
                               "sessionid", "session_id", "bearer", "jwt"})
CREDENTIAL_SUFFIXES = ("key", "token", "secret", "password", "passwd", "signature", "credential",
                       "credentials", "_auth")
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]*[^\s\"'<>`).,;:!?\]]")


def is_credential_param(name: str) -> bool:
    """Whether a URL query parameter called ``name`` carries a credential (see CREDENTIAL_PARAMS)."""
    n = re.sub(r"[-.\s]", "_", unquote_plus(name).strip().lower())
    return n in CREDENTIAL_PARAMS or n.endswith(CREDENTIAL_SUFFIXES)


def _split_url(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts


def public_url(url: str) -> str:
    """``url`` as vlmzoo stores and shows it: no ``user:password@``, no credential parameters.

    A URL with neither comes back exactly as given (so stored run ids of plain URLs never move).
    """
    parts = _split_url(url)
    if parts is None:  # not a URL urllib can read: drop anything between "//" and an "@"
        return re.sub(r"(?<=//)[^/@\s]*@", "", url)
    netloc = parts.netloc.rpartition("@")[2]
    pieces = parts.query.split("&")
    kept = [p for p in pieces if not (p and is_credential_param(p.partition("=")[0]))]
    if netloc == parts.netloc and len(kept) == len(pieces):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), parts.fragment))


def public_text(text: str) -> str:
    """``text`` with every URL in it made ``public_url`` (for messages and names)."""
    return _URL_IN_TEXT.sub(lambda m: public_url(m.group()), text)


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials written into ``url``: its user name and password, and the values of its
    credential parameters (each at least 6 characters: shorter ones would match ordinary words)."""
    parts = _split_url(url)
    if parts is None:
        return ()
    found = [unquote_plus(v) for k, _, v in (p.partition("=") for p in parts.query.split("&"))
             if k and is_credential_param(k)]
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        found += [unquote_plus(v) for v in userinfo.partition(":")[::2]]
    return tuple(s for s in dict.fromkeys(found) if len(s) >= 6)
