"""The shards of a sharded cluster, as ``config.shards`` lists them (pure: no I/O here).

A shard's ``host`` is ``"rs0/h1:27017,h2:27017"`` for a replica set (the set's name, then its
members) or ``"h1:27017"`` for a lone server. `ShardInfo.get_url` turns it into a connection
string that names every member and the replica set, so the client finds the primary even when
the first member is down (gtm keeps only the first host).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gtom._errors import ConfigurationError

__all__ = ["ShardInfo", "shards_from_documents"]

#: scheme (+srv?), userinfo, path, query of a connection string.
_URI = re.compile(r"^mongodb(\+srv)?://(?:([^@/?]*)@)?[^/?]*(/[^?]*)?(?:\?(.*))?$")


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard of a sharded cluster: its name and where its servers are."""

    host: str
    """The ``host`` string of its ``config.shards`` document: ``"rs0/h1:27017,h2:27017"``."""
    id: Any = None
    """The shard's ``_id`` in ``config.shards`` (its name, e.g. ``"shard01"``)."""

    @property
    def replica_set(self) -> str | None:
        """The replica set's name, or None for a shard that is a lone server."""
        name, slash, _ = self.host.partition("/")
        return name if slash else None

    @property
    def hosts(self) -> list[str]:
        """Every ``host:port`` of the shard, in the order ``config.shards`` gives them."""
        members = self.host.partition("/")[2] if "/" in self.host else self.host
        return [member.strip() for member in members.split(",") if member.strip()]

    def get_url(self, like: str | None = None) -> str:
        """A connection string for the shard: every member, plus ``replicaSet`` when it has one.

        ``like``: another connection string (the config server's) whose credentials, database
        and options the shard's gets too; its hosts and ``replicaSet``/``directConnection`` are
        replaced. Or add credentials and TLS as for any client:
        ``MongoClient(info.get_url(), username=..., password=..., tls=True)``.
        """
        userinfo, path, params = "", "/", []
        if like is not None:
            match = _URI.match(like)
            if match is None:
                raise ConfigurationError(f"not a MongoDB connection string: {like!r}")
            srv, userinfo, path, query = match.group(1, 2, 3, 4)
            path = path or "/"
            params = [
                p
                for p in (query or "").split("&")
                if p and p.split("=")[0].lower() not in ("replicaset", "directconnection")
            ]
            if srv and not any(p.split("=")[0].lower() in ("tls", "ssl") for p in params):
                params.append("tls=true")  # what mongodb+srv implied
        if self.replica_set:
            params.append(f"replicaSet={self.replica_set}")
        credentials = f"{userinfo}@" if userinfo else ""
        query = "?" + "&".join(params) if params else ""
        return f"mongodb://{credentials}{','.join(self.hosts)}{path}{query}"

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ShardInfo:
        """The shard a ``config.shards`` document describes (`ConfigurationError` if malformed)."""
        shard_id = document.get("_id")
        host = document.get("host")
        if not isinstance(host, str) or not host.strip():
            raise ConfigurationError(
                f"config.shards document {shard_id!r} has no usable 'host' "
                f"(want 'rs/host:port,...' or 'host:port'), got {host!r}"
            )
        info = cls(host=host.strip(), id=shard_id)
        name = info.replica_set
        if name == "" or not info.hosts or any(" " in h for h in info.hosts):
            raise ConfigurationError(
                f"config.shards document {shard_id!r} has a malformed 'host' {host!r} "
                f"(want 'rs/host:port,...' or 'host:port')"
            )
        return info


def shards_from_documents(documents: Iterable[Mapping[str, Any]]) -> list[ShardInfo]:
    """The shards of ``config.shards`` documents, in the order given."""
    return [ShardInfo.from_document(document) for document in documents]
