"""Passwords never printed: storage URLs and error texts with every password masked."""

from __future__ import annotations

import re
from urllib.parse import quote

import sqlalchemy

# scheme://user:password@ -- the password runs to the last '@' of the URL (a raw '@' in a
# password is a user error that must not leak either).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")
# password=... as a URL query parameter (?password=, &password=) or a libpq key=value pair
# (`host=h password=secret`, or quoted: password='a b'); also passwd= and pwd=.
_KEY_PASSWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:password|passwd|pwd)\s*=\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;'\"]+)",
    re.IGNORECASE,
)


def mask_password(text: str) -> str:
    """Every password in `text` masked as `***`, whatever its form: `scheme://user:secret@`,
    a `?password=secret` query parameter, or a libpq `password=secret` pair."""
    return _KEY_PASSWORD.sub(r"\g<head>***", _URL_PASSWORD.sub(r"\g<head>***@", text))


def redact(text: str, url: str) -> str:
    """`text` with the password of `url` masked: inside URLs and wherever it appears verbatim."""
    text = mask_password(text)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return text
    passwords = [parsed.password] + [
        value
        for key, values in parsed.query.items()
        if key.lower() in ("password", "passwd", "pwd")
        for value in ([values] if isinstance(values, str) else values)
    ]
    for password in passwords:
        if password and len(str(password)) >= 4:  # shorter ones would mask ordinary words
            for form in {str(password), quote(str(password), safe="")}:
                text = text.replace(form, "***")
    return text
