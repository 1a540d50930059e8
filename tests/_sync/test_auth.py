# Generated from tests/_async/test_auth.py by tools/synchro.py. Edit that one.
"""Authentication and authorization failures are clear errors, not retries."""

from __future__ import annotations

from typing import Any

import pytest

import gtom
from tests._sync.helpers import collect
from tests.conftest import AUTH_PASSWORD, TestServer


def start_as(server: TestServer, user: str, password: str, *, write: bool = False) -> list[gtom.Op]:
    """Start a context as ``user``; with ``write``, insert a document and collect its op."""
    client: Any = server.client(username=user, password=password)
    try:
        options = gtom.Options(namespace_filter=lambda op: op.namespace == "authz.c")
        with gtom.start(client, options) as ctx:
            if not write:
                return []
            client.authz.c.insert_one({"_id": "tailed"})
            return collect(ctx, 1)
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
    (op,) = start_as(auth_server, "root", AUTH_PASSWORD, write=True)
    assert (op.operation, op.namespace, op.id) == ("i", "authz.c", "tailed")
