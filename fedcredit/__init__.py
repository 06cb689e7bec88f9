"""fedcredit: a bank and a credit-data holder train credit models together; raw data stays home.

The bank (active party) holds labels and the private key; the holder (passive party)
serves encrypted histograms, split lookups and scores. See ``README.md``.
"""
__version__ = "0.1.0"


def connect(address: str, tls_dir=None, *, purpose: str = "credit", insecure: bool = False,
            **options):
    """Open a gRPC channel to a running holder; pass it as ``holder=`` to the estimators."""
    from .transport.client import connect as _connect

    return _connect(address, tls_dir=tls_dir, purpose=purpose, insecure=insecure, **options)
