"""The holder's half of every trained model, in SQLite: it survives a restart.

A :class:`~fedcredit.protocol.hooks.StoredModel` holds the holder's bins, its split records
(feature, bin, missing-goes-left) and the tree shapes; the bank's model file keeps only the
model id and record ids. The protocol core saves after every finished tree, so a training
cut short still leaves the trees it finished.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pandas as pd

from ..errors import SessionNotFound
from ..protocol.hooks import StoredModel
from .store import write


class SqliteModelStore:
    """The protocol core's ``models`` hook."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self._lock = threading.Lock()

    def save(self, model: StoredModel) -> None:
        now = time.time()
        with self._lock, write(self.con):
            self.con.execute(
                "INSERT INTO models (model_id, bank, purpose, created_at, updated_at, n_trees, "
                "body) VALUES (?,?,?,?,?,?,?) ON CONFLICT(model_id) DO UPDATE SET "
                "updated_at = excluded.updated_at, n_trees = excluded.n_trees, "
                "body = excluded.body",
                (model.model_id, model.bank, model.purpose, now, now, len(model.trees),
                 model.to_json()))

    def load(self, model_id: str) -> StoredModel:
        with self._lock:
            row = self.con.execute("SELECT body FROM models WHERE model_id = ?",
                                   (str(model_id),)).fetchone()
        if row is None:
            raise SessionNotFound(f"the holder knows no model {str(model_id)[:40]!r}")
        return StoredModel.from_json(row[0])


def list_models(con: sqlite3.Connection) -> pd.DataFrame:
    rows = con.execute("SELECT model_id, bank, purpose, created_at, updated_at, n_trees "
                       "FROM models ORDER BY created_at").fetchall()
    return pd.DataFrame(rows, columns=["model_id", "bank", "purpose", "created_at",
                                       "updated_at", "n_trees"])
