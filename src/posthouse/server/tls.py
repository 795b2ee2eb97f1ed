"""TLS contexts for STARTTLS and implicit-TLS listeners (RFC 8314, RFC 9325)."""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSConfigError(Exception):
    """The certificate or key cannot be loaded."""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side context with modern defaults (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(Path(cert_file), Path(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"cannot load TLS certificate {cert_file} / key {key_file}: {exc}"
        ) from exc
    return context
