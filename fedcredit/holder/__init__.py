"""The data holder as a long-lived service: configuration, storage, consent, audit, serving.

Everything lives under one holder directory (see :mod:`fedcredit.holder.config`):

- :mod:`.config`      ``holder.toml``: listen address, TLS paths, policy knobs
- :mod:`.store`       the SQLite store (WAL mode) and its schema
- :mod:`.features`    the feature table: validated loads, Parquet, atomic switch
- :mod:`.consent`     the enterprise-authorisation registry (the protocol's consent hook)
- :mod:`.audit`       the hash-chained audit log (the protocol's auditor hook), export, stats
- :mod:`.modelstore`  the holder's half of trained models (the protocol's model store hook)
- :mod:`.service`     ``fedcredit holder serve``: the protocol core with the service's
                      middleware (refusal audit, daily caps, sessions table) over mTLS gRPC
- :mod:`.logs`        structured logs without enterprise ids or values
- :mod:`.devca`       a development certificate authority (``fedcredit certs dev``)
- :mod:`.ephemeral`   the entry point of the throwaway holder process that
                      :mod:`fedcredit.simulation` starts (no store)

The operator's commands are in :mod:`fedcredit.cli.holder_cmds`.
"""
