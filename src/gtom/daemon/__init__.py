"""The gtom daemon: follow a deployment and deliver every event to a sink, with checkpoints.

``gtom run --config gtom.toml`` runs it. The pieces, one module each:

* `gtom.daemon.cli`: ``gtom run`` and ``gtom check-config``; `gtom.daemon.config`: the settings
  (TOML file, ``GTOM_*`` environment, flags), validated; `gtom.daemon.errors` and
  `gtom.daemon.exits`: its errors and their exit codes; `gtom.daemon.logs`: scrubbed logs;
* `gtom.daemon.startup`: where a run starts: the library context, planned from the checkpoint;
* `gtom.daemon.runner`: the pipeline: read, batch, send, then checkpoint what the sink confirmed;
* `gtom.daemon.acks`: batches in flight and the checkpoint that is safe to save (pure);
* `gtom.daemon.events`: ops as events with stable ids, encoded as Extended JSON;
* `gtom.daemon.positions`: which events were delivered, as checkpoint positions (pure);
* `gtom.daemon.checkpoint`: where the delivered position is kept (a file, a MongoDB collection);
* `gtom.daemon.sinks`: where events go (stdout, file, webhook; NATS, Redis, Kafka as extras);
* `gtom.daemon.metrics`: Prometheus metrics, ``/healthz`` and ``/readyz``;
  `gtom.daemon.progress`: a copy's progress.

The daemon's extra dependencies come with ``pip install 'gtom[daemon]'``.
"""
