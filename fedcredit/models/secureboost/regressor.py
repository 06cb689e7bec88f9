"""``SecureBoostRegressor``: SecureBoost on squared error, for amounts (credit lines, limits).

The protocol is the classifier's, message for message: the bank encrypts per row one
(g, h) pair, here ``g = w * (prediction - y)`` and ``h = w``, scaled by powers of two into
the slot width the holder allows (:mod:`fedcredit.models.secureboost.boosting`); the fit
starts at the (weighted) mean of the targets.

>>> reg = SecureBoostRegressor(n_estimators=20, max_depth=3)             # doctest: +SKIP
>>> reg.fit(X_bank, credit_line, holder=channel).predict(X_new, holder=channel)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .boosting import SquaredLoss
from .estimator import BANK_ONLY_TREES, SecureBoostModel

FORMAT = "fedcredit.secureboost_regressor/1"


class SecureBoostRegressor(SecureBoostModel):
    """Regression on squared error trained jointly with a credit-data holder.

    Parameters are :class:`SecureBoostModel`'s (no ``class_weight``); ``y`` in ``fit`` is
    any finite number per row, ``sample_weight`` weights rows.
    """

    _format = FORMAT
    _loss = SquaredLoss
    _target = "continuous"

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 max_bin: int = 32, min_child_samples: int = 20, reg_lambda: float = 1.0,
                 gamma: float = 0.0, min_child_weight: float = 1e-3, subsample: float = 1.0,
                 random_state: int | None = 0, n_jobs: int | None = None, key_bits: int = 2048,
                 insecure_key: bool = False, he_scheme: str = "paillier", frac_bits: int = 24,
                 verbose: bool = True, bank_only_trees: int = BANK_ONLY_TREES,
                 scoring: str = "auto", monotone_constraints: dict | None = None,
                 uncovered: str = "score", engine="local", goss_top_rate: float = 0.0,
                 goss_other_rate: float = 0.1):
        super().__init__(n_estimators, max_depth, learning_rate, max_bin, min_child_samples,
                         reg_lambda, gamma, min_child_weight, subsample, random_state, n_jobs,
                         key_bits, insecure_key, he_scheme, frac_bits, verbose, bank_only_trees,
                         scoring, monotone_constraints, class_weight=None, uncovered=uncovered,
                         engine=engine, goss_top_rate=goss_top_rate,
                         goss_other_rate=goss_other_rate)

    def predict(self, X, holder=None, *, holders=None,
                id_column: str | None = None) -> np.ndarray:
        """The predicted amount per row.

        Parameters
        ----------
        X : pandas.DataFrame
            Indexed by enterprise id (or ids in ``id_column``).
        holder : Channel or PassiveParty
            The holder that trained the model.
        holders : list or mapping of holder name to holder, optional
            The holders of a model trained with several.
        id_column : str, optional

        Returns
        -------
        numpy.ndarray of float
        """
        return self.decision_function(X, holder, holders=holders, id_column=id_column)

    def explain(self, X, holder=None, *, holders=None,
                id_column: str | None = None) -> pd.DataFrame:
        """Each feature's contribution to each row's prediction (Saabas, as the classifier's
        :meth:`SecureBoostModel.explain`); ``attrs["units"]`` is ``"prediction"``, which has
        no adverse direction, so :func:`~fedcredit.models.explain.top_reasons` refuses it."""
        out = super().explain(X, holder, holders=holders, id_column=id_column)
        out.attrs["units"] = "prediction"
        return out
