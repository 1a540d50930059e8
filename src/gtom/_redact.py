"""Keeping passwords out of messages: the credentials of any MongoDB or HTTP URL are masked."""

from __future__ import annotations

import re

__all__ = ["redact"]

_CREDENTIALS = re.compile(r"((?:mongodb(?:\+srv)?|https?)://)[^@/\s]+@")


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", text)
