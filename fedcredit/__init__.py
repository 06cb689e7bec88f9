"""fedcredit: a bank and a credit-data holder train credit models together; raw data stays home.

The bank (active party) holds labels and the private key; the holder (passive party)
serves encrypted histograms, split lookups and scores. See ``README.md``.

``import fedcredit`` stays light: the subpackages below load on first use, so
``fedcredit.metrics.summary(...)`` works after a bare ``import fedcredit`` while
``fedcredit.plots`` (matplotlib) and the models load only when touched.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: subpackages reachable as attributes of ``fedcredit``, imported on first access
_SUBMODULES = ("datasets", "errors", "metrics", "models", "plots", "protocol")

if TYPE_CHECKING:  # for type checkers and IDEs; at run time they load lazily
    from . import datasets, errors, metrics, models, plots, protocol  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it on the package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


def connect(address: str, tls_dir=None, *, purpose: str = "credit", insecure: bool = False,
            **options):
    """Open a gRPC channel to a running holder; pass it as ``holder=`` to the estimators."""
    from .transport.client import connect as _connect

    return _connect(address, tls_dir=tls_dir, purpose=purpose, insecure=insecure, **options)
