"""Pure parts of the core: positions, backoff, error classification, options, the public API."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

import gtom
from gtom._backoff import Backoff
from gtom._retry import describe, is_transient, translate


def test_backoff_grows_is_capped_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_backoff_jitter_stays_between_half_and_the_whole_ceiling() -> None:
    low = Backoff(base=1.0, cap=10.0, rand=lambda: 0.0)
    assert low.next_delay() == 0.5


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection reset"),
        NetworkTimeout("timed out"),
        NotPrimaryError("not primary", {}),
        ServerSelectionTimeoutError("no servers"),
        OperationFailure("shutting down", code=91),
        OperationFailure("cursor gone", code=43),
        OperationFailure("capped position lost", code=136),
        OperationFailure(
            "labelled", code=1, details={"errorLabels": ["ResumableChangeStreamError"]}
        ),
    ],
)
def test_transient_errors_are_retried(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (OperationFailure("bad", code=2), gtom.GtomError, "MongoDB refused tailing: bad (error 2)"),
        (
            OperationFailure("not authorized on local", code=13),
            gtom.NotAuthorizedError,
            "the user is not authorized for tailing",
        ),
        (ServerSelectionTimeoutError("x:1: refused"), gtom.ServerUnavailableError, "cannot reach"),
    ],
)
def test_other_errors_become_clear_gtom_errors(
    error: Exception, kind: type[gtom.GtomError], message: str
) -> None:
    assert not isinstance(error, OperationFailure) or not is_transient(error)
    translated = translate(error, "tailing")  # type: ignore[arg-type]
    assert isinstance(translated, kind)
    assert message in str(translated)


def test_describe_keeps_server_errors_short() -> None:
    error = OperationFailure(
        "x",
        code=91,
        details={"errmsg": "shutting down", "code": 91, "codeName": "ShutdownInProgress"},
    )
    assert describe(error) == "shutting down (error 91 ShutdownInProgress)"


def test_options_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        gtom.Options(20)  # type: ignore[call-arg, arg-type]
    options = gtom.Options()
    with pytest.raises(AttributeError):
        options.channel_size = 5  # type: ignore[misc]
    assert options.replace(channel_size=5).channel_size == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"direct_read_ns": ["db"]}, "direct_read_ns entries must look like 'db.collection'"),
        ({"direct_read_ns": ["db.c", "db.c"]}, "direct_read_ns has duplicates"),
        ({"direct_read_resume": {"db.c": {}}}, "not in direct_read_ns"),
        ({"direct_read_split_max": -1}, "direct_read_split_max must be an integer >= 0"),
        ({"direct_read_concur": 0}, "direct_read_concur must be an integer >= 1"),
    ],
)
def test_bad_direct_read_options_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(gtom.ConfigurationError, match=message):
        gtom.Options(**changes).validate()


def test_op_helpers() -> None:
    op = gtom.Op("c", "db.$cmd", data={"dropDatabase": 1})
    assert op.is_drop() and op.is_drop_database() and op.is_command()
    assert (op.get_database(), op.get_collection()) == ("db", "")
    drop = gtom.Op("c", "db.users", data={"drop": "users"})
    assert drop.is_drop() and not drop.is_drop_database() and drop.get_collection() == "users"
    create = gtom.Op("c", "db.users", data={"create": "users"})
    assert not create.is_drop()
    insert = gtom.Op("i", "db.a.b", id=1)
    assert insert.get_collection() == "a.b" and insert.is_insert()


EXPORTED = {
    "AsyncMultiOpCtx",
    "AsyncOpCtx",
    "AsyncOpQueue",
    "AuthenticationFailedError",
    "CallbackError",
    "ChangeDecoder",
    "ConfigurationError",
    "DecodeError",
    "DirectReadProgress",
    "GtomError",
    "HistoryLostError",
    "IncompleteChainError",
    "MultiOpCtx",
    "NotAuthorizedError",
    "NotReplicaSetError",
    "Op",
    "OpCtx",
    "OpFilter",
    "OpQueue",
    "OplogDecoder",
    "Options",
    "ServerError",
    "ServerUnavailableError",
    "ShardInfo",
    "Source",
    "StoppedError",
    "Txn",
    "__version__",
    "chain_op_filters",
    "consistent",
    "first_op_timestamp",
    "first_op_timestamp_async",
    "get_shards",
    "get_shards_async",
    "last_op_timestamp",
    "last_op_timestamp_async",
    "start",
    "start_async",
    "start_multi",
    "start_multi_async",
}


def test_the_public_surface_is_exactly_this() -> None:
    assert set(gtom.__all__) == EXPORTED


DUNDERS_TO_DOCUMENT = ("__iter__", "__next__", "__aiter__", "__anext__", "__init__")


def test_every_public_name_and_member_has_a_docstring() -> None:
    missing = []
    for name in gtom.__all__:
        obj = getattr(gtom, name)
        if name.startswith("__") or name == "OpFilter":
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if member.startswith("_") and member not in DUNDERS_TO_DOCUMENT:
                    continue
                documentable = callable(value) or isinstance(value, property)
                if documentable and not inspect.getdoc(value):
                    missing.append(f"{name}.{member}")
    assert missing == []


def test_errors_all_derive_from_gtom_error() -> None:
    for name in gtom.__all__:
        obj = getattr(gtom, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, gtom.GtomError), name


def test_server_traits_switch_workarounds_on_only_for_secantusdb() -> None:
    from gtom._servers import MONGOD, ServerTraits

    assert ServerTraits.from_build_info({"version": "8.0.4"}) == MONGOD
    assert not MONGOD.open_race and not MONGOD.silent_truncation and MONGOD.natural_sort
    secantus = ServerTraits.from_build_info({"version": "8.2.11", "secantusVersion": "0.7.0b3"})
    assert secantus.open_race and secantus.silent_truncation and not secantus.natural_sort
    assert not secantus.stale_tail and not MONGOD.stale_tail
    assert not secantus.projection_scans and not MONGOD.projection_scans
    rust = ServerTraits.from_build_info(
        {"secantusVersion": "0.5.3", "buildEnvironment": {"cc": "rustc"}}
    )
    assert rust.stale_tail and rust.projection_scans


def test_helpers_have_an_explicit_twin_for_each_face() -> None:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    for name in ("last_op_timestamp", "first_op_timestamp", "get_shards"):
        with pytest.raises(gtom.ConfigurationError, match=f"use {name}_async"):
            getattr(gtom, name)(client)
        assert inspect.iscoroutinefunction(getattr(gtom, f"{name}_async"))


def test_the_error_tree_in_the_docs_names_every_error_under_its_parent() -> None:
    import gtom._errors as errors

    tree = errors.__doc__ or ""
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, gtom.GtomError)
    ]
    drawn: dict[str, int] = {}
    for line in tree.splitlines():
        words = line.replace("├──", " ").replace("└──", " ").replace("│", " ").split()
        if words and words[0] in {c.__name__ for c in classes}:
            drawn[words[0]] = len(line) - len(line.lstrip(" │├└─"))
    assert set(drawn) == {c.__name__ for c in classes}
    for cls in classes:
        assert getattr(gtom, cls.__name__) is cls, f"{cls.__name__} is not exported"
        parent = cls.__mro__[1]
        if parent is not Exception:
            assert drawn[cls.__name__] > drawn[parent.__name__], cls.__name__


def test_a_tail_filter_keeps_the_named_databases_and_collections_and_every_copy() -> None:
    from gtom._namespaces import _ANSWERS_KEPT, tail_filter

    keep = tail_filter(["shop", "crm.people"])
    assert keep is not None and tail_filter([]) is None

    def op(ns: str, source: gtom.Source = gtom.Source.OPLOG) -> gtom.Op:
        return gtom.Op("i", ns, id=1, source=source)

    for _ in range(2):  # asked again: the same answers
        assert keep(op("shop.orders")) and keep(op("crm.people"))
        assert not keep(op("crm.deals")) and not keep(op("shopping.x"))
        assert keep(op("other.x", gtom.Source.DIRECT_READ))
    for i in range(_ANSWERS_KEPT + 5):  # many namespaces: still right
        assert keep(op(f"shop.c{i}")) and not keep(op(f"x{i}.c"))
    with pytest.raises(ValueError, match="namespaces are"):
        tail_filter(["db."])
