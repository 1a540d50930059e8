"""The gtom daemon: follow a deployment and deliver every event to a sink, with checkpoints.

``gtom run --config gtom.toml`` runs it. The pieces, one module each:

* `gtom.daemon.config`: the settings (TOML file, ``GTOM_*`` environment, flags), validated;
* `gtom.daemon.events`: ops as events with stable ids, encoded as Extended JSON;
* `gtom.daemon.sources`: how the ``[source]`` settings become the library's inputs;
* `gtom.daemon.sinks`: where events go (stdout, file, webhook; NATS, Redis, Kafka as extras);
* `gtom.daemon.checkpoint`: where the delivered position is kept (a file, a MongoDB collection);
* `gtom.daemon.metrics`: Prometheus metrics, ``/healthz`` and ``/readyz``;
* `gtom.daemon.positions`: which events were delivered, as checkpoint positions (pure);
* `gtom.daemon.runner`: the pipeline: read, batch, send, then checkpoint what the sink confirmed.

The daemon's extra dependencies come with ``pip install 'gtom[daemon]'``.
"""
