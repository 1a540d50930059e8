# Generated from tests/_async/test_auth.py by tools/synchro.py. Edit that one.
"""Authentication and authorization failures are clear errors, not retries."""

from __future__ import annotations

from typing import Any

import pytest

import gtom
from tests.conftest import AUTH_PASSWORD, TestServer


def start_as(server: TestServer, user: str, password: str) -> None:
    client: Any = server.client(username=user, password=password)
    try:
        ctx = gtom.start(client)
        ctx.stop()
    finally:
        client.close()


def test_a_wrong_password_is_an_authentication_error(auth_server: TestServer) -> None:
    with pytest.raises(gtom.NotAuthorizedError, match="authentication failed") as caught:
        start_as(auth_server, "root", "wrong")
    assert AUTH_PASSWORD not in str(caught.value)


def test_a_user_who_may_not_read_the_oplog_is_told_what_to_grant(
    auth_server: TestServer,
) -> None:
    with pytest.raises(gtom.NotAuthorizedError, match="grant it the read role"):
        start_as(auth_server, "app", AUTH_PASSWORD)


def test_an_authorized_user_tails(auth_server: TestServer) -> None:
    start_as(auth_server, "root", AUTH_PASSWORD)
