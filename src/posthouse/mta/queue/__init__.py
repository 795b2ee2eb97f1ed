"""The durable mail queue, one module per concern.

- :mod:`.store`: the queue directory (:class:`~.store.QueueStore`), its entries and their locks;
- :mod:`.incoming`: receiving a message until it is committed (durable before acknowledged);
- :mod:`.groupcommit`: batching the fsyncs of concurrent commits;
- :mod:`.control_file`: the envelope types and the ``ID.qf`` JSON format;
- :mod:`.files`: file modes and descriptor helpers the modules share;
- :mod:`.ids`: queue identifiers;
- :mod:`.scheduler`: which queued message is delivered when;
- :mod:`.run`: running the queue on demand (``sendmail -q`` and its selections);
- :mod:`.listing`: the ``mailq`` listing.
"""
