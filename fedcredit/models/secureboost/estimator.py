"""``SecureBoostClassifier``: vertical federated gradient boosting with a scikit-learn surface.

>>> model = SecureBoostClassifier(n_estimators=5, max_depth=3)      # doctest: +SKIP
>>> model.fit(X_bank, y, holder=fedcredit.connect("holder:50051", tls_dir="certs"))
>>> model.predict_proba(X_new, holder=channel)[:, 1]

``X_bank`` is a pandas DataFrame indexed by enterprise id (USCC); the holder is found through
``holder`` (a channel from :func:`fedcredit.connect`, an ``InProcessChannel`` or a
``PassiveParty``). Training aligns ids by PSI, then trains on the intersection. The bank
keeps its own splits and leaf values; the holder keeps its thresholds under a model id.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...binning import BinMapper
from ...crypto.engine import check_engine
from ...errors import InvalidInput, PolicyViolation
from ...protocol.secureboost import bank as steps
from ...protocol.secureboost.math import MAX_FRAC_BITS
from ..base import FederatedClassifier, FederatedScorer, as_channel, check_xy
from ..explain import LOG_ODDS, explanation_frame, saabas
from ..holders import HolderPart
from . import parts
from .boosting import BANK_ONLY, LogisticLoss, Loss, fit_boosting
from .parts import holder_parts
from .private_scoring import MIN_PRIVATE_PATH_BITS, private_decision_function, private_path_bits
from .tree import Tree, bank_paths, reached_leaves

# as_channel and check_xy: the checks' old home
__all__ = ["SecureBoostClassifier", "SecureBoostModel", "as_channel", "check_xy"]

FORMAT = "fedcredit.secureboost/1"
#: bank-only trees by default: no AUC cost at k=1 on default_credit, -0.003 at k=2
BANK_ONLY_TREES = 1
#: how the bank may score (the ``scoring`` parameter)
SCORING_MODES = ("auto", "private", "plain")
#: "auto" scores privately up to this many enterprises per call (online scoring); plain
#: scoring is ~300x faster per enterprise in bulk
PRIVATE_ROWS = 16


class SecureBoostModel(FederatedScorer):
    """Gradient boosting trained jointly with a credit-data holder (SecureBoost): what
    :class:`SecureBoostClassifier` and :class:`SecureBoostRegressor` share.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate : as in LightGBM.
    max_bin : int
        Bins per feature, each party binning its own features (missing values get one more).
    min_child_samples : int
        Minimum rows on each side of a split (the holder applies it to its candidates).
    reg_lambda : float
        L2 regularisation of leaf values.
    gamma : float
        Minimum gain to split.
    min_child_weight : float
        Minimum hessian sum on each side of a split.
    subsample : float
        Fraction of training rows per tree (only those rows are encrypted).
    goss_top_rate, goss_other_rate : float
        Gradient-based one-side sampling (LightGBM's GOSS, SecureBoost+): with
        ``goss_top_rate`` > 0 each tree keeps the rows of the largest ``|g|`` (that share),
        and a random ``goss_other_rate`` share of the rest with their gradients and hessians
        scaled by ``(1 - top) / other``; only those rows are encrypted. Not with
        ``subsample`` < 1.
    random_state : int
        Seeds subsampling and binning samples (never cryptography).
    n_jobs : int or None
        Worker processes for encryption and decryption; None or -1: all cores.
    key_bits : int
        Paillier key size, 2048 by default; smaller only with ``insecure_key=True``.
    he_scheme : str
        Homomorphic scheme ("paillier").
    frac_bits : int
        Fixed-point fraction bits of gradients and hessians.
    verbose : bool
        Progress bar over trees and levels (tqdm; renders in notebooks).
    bank_only_trees : int
        The first k trees use the bank's features alone and never reach the holder: no
        gradients, no node rows, not even a TreeStart, and they score locally. The first
        trees' node row sets are the most label-revealing (tree 0's gradients are a constant
        minus the label), so this keeps them from the holder (see docs/PRIVACY.md). At most
        ``n_estimators - 1``: the last tree is always federated. Default 1: on default_credit
        (5 trees, depth 3) test AUC 0.7727 with k=0, 0.7733 with k=1, 0.7697 with k=2.
    scoring : {"auto", "private", "plain"}
        How :meth:`decision_function` asks the holder. "plain": per tree, which leaves the
        holder's splits allow (fast in bulk; shows the bank the holder's decision at every
        holder node an enterprise could reach). "private": the bank sends its leaf values
        encrypted and gets one ciphertext per enterprise back, so it learns the score and
        nothing of the holder's decisions (one enterprise, 50 trees: ~250 ms); models too
        small to hide the path are refused. "auto" (default): private for online scoring
        (at most :data:`PRIVATE_ROWS` enterprises per call) when the model is large enough
        to hide the path, plain otherwise.
    monotone_constraints : dict, optional
        ``{feature: +1 or -1}``: the score may only rise (+1) or fall (-1) with the
        feature, all else equal; keys are bank columns or holder features as the holder
        publishes them (``holder:`` prefix optional). Enforced where gains are computed
        (LightGBM's "basic" method); for holder features the holder flags which of its
        disclosed candidates are thresholds of the named features (what that tells the bank:
        :func:`fedcredit.protocol.secureboost.bank.layer`). Holds over non-missing values;
        a missing value follows each split's learned direction.
    class_weight : dict, "balanced" or None
        Classifier only: weight per label (``{0: 1, 1: 10}``), "balanced" as scikit-learn
        (``n / (2 * count(label))`` on the aligned rows), times ``sample_weight`` in ``fit``.
    engine : "local", "dask", a Dask scheduler address or a DaskEngine
        Where the bank's encryption and decryption run during ``fit``: this machine's
        worker processes ("local"), a Dask ``LocalCluster`` of ``n_jobs`` workers started
        for the fit ("dask", TLS with a throwaway certificate), a scheduler
        (``tcp://host:port``), or a :class:`fedcredit.crypto.engine.DaskEngine` you opened
        (``tls://`` with your cluster's certificates). The trees are the same on any engine.
    """

    _format = FORMAT
    _task = "train"
    _loss: type[Loss] = LogisticLoss
    _multi_holder = True
    _align_any = True

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 max_bin: int = 32, min_child_samples: int = 20, reg_lambda: float = 1.0,
                 gamma: float = 0.0, min_child_weight: float = 1e-3, subsample: float = 1.0,
                 random_state: int | None = 0, n_jobs: int | None = None, key_bits: int = 2048,
                 insecure_key: bool = False, he_scheme: str = "paillier", frac_bits: int = 24,
                 verbose: bool = True, bank_only_trees: int = BANK_ONLY_TREES,
                 scoring: str = "auto", monotone_constraints: dict | None = None,
                 class_weight: dict | str | None = None, uncovered: str = "score",
                 engine="local", goss_top_rate: float = 0.0, goss_other_rate: float = 0.1):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.max_bin = max_bin
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.gamma = gamma
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.key_bits = key_bits
        self.insecure_key = insecure_key
        self.he_scheme = he_scheme
        self.frac_bits = frac_bits
        self.verbose = verbose
        self.bank_only_trees = bank_only_trees
        self.scoring = scoring
        self.monotone_constraints = monotone_constraints
        self.class_weight = class_weight
        self.uncovered = uncovered
        self.engine = engine
        self.goss_top_rate = goss_top_rate
        self.goss_other_rate = goss_other_rate

    def _validate_params(self) -> None:
        if int(self.n_estimators) < 1:
            raise InvalidInput("n_estimators must be >= 1")
        if not 1 <= int(self.max_depth) <= 16:
            raise InvalidInput("max_depth must be in [1, 16]")
        if not 0 < float(self.learning_rate) <= 1:
            raise InvalidInput("learning_rate must be in (0, 1]")
        if not 0 < float(self.subsample) <= 1:
            raise InvalidInput("subsample must be in (0, 1]")
        top, other = float(self.goss_top_rate), float(self.goss_other_rate)
        if top and not (0 < top < 1 and 0 < other <= 1 - top and float(self.subsample) == 1):
            raise InvalidInput("GOSS needs 0 < goss_top_rate < 1, 0 < goss_other_rate <= "
                               "1 - goss_top_rate, and subsample = 1")
        if int(self.min_child_samples) < 1:
            raise InvalidInput("min_child_samples must be >= 1")
        if float(self.reg_lambda) < 0 or float(self.gamma) < 0:
            raise InvalidInput("reg_lambda and gamma must be >= 0")
        if int(self.bank_only_trees) < 0:
            raise InvalidInput("bank_only_trees must be >= 0")
        mono = self.monotone_constraints
        if mono is not None and (not isinstance(mono, dict) or any(
                not isinstance(k, str) or v not in (-1, 0, 1) for k, v in mono.items())):
            raise InvalidInput("monotone_constraints must map feature names to +1, -1 or 0, "
                               f"got {mono!r}")
        if not 8 <= int(self.frac_bits) <= MAX_FRAC_BITS:
            raise InvalidInput(f"frac_bits must be in [8, {MAX_FRAC_BITS}] (the holder refuses "
                               "wider gradient slots)")
        self._check_scoring()
        check_engine(self.engine)

    def _check_scoring(self) -> None:
        if self.scoring not in SCORING_MODES:
            raise InvalidInput(f"scoring must be one of {', '.join(SCORING_MODES)}, "
                               f"got {self.scoring!r}")

    def _private(self, n_rows: int) -> bool:
        """Whether this call scores privately (see the ``scoring`` parameter); a model of
        several holders scores plainly (private scoring is written for one)."""
        self._check_scoring()
        several = len(holder_parts(self)) > 1
        if self.scoring != "auto":
            if self.scoring == "private" and several:
                raise InvalidInput("scoring='private' works with one holder; this model has "
                                   f"{len(holder_parts(self))}: set scoring='plain'")
            return self.scoring == "private"
        return n_rows <= PRIVATE_ROWS and not several and \
            private_path_bits(self) >= MIN_PRIVATE_PATH_BITS

    def _min_aligned(self) -> int:
        return 2 * int(self.min_child_samples)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, X, y, holder=None, *, holders=None, id_column: str | None = None,
            sample_weight=None, eval_set=None, early_stopping_rounds: int | None = None,
            align: str = "all"):
        """Align with the holder (PSI), then boost on the enterprises both parties have.

        With ``holders=`` (several holders): PSI with each, training on the enterprises
        every holder serves; each node takes the best split of the bank and every holder
        (the bank on exact ties, then the holders in order), each holder's policy applying
        to its own candidates; holder features are named ``<holder name>:<feature>``.

        Parameters
        ----------
        X, y, holder, holders, id_column, sample_weight
            As for :meth:`FederatedEstimator.fit` (``X`` may hold ids and labels only).
            Weights multiply each row's gradient and hessian before encryption
            (``min_child_weight`` bounds weighted hessian sums; ``min_child_samples``
            counts rows).
        eval_set : (X, y), optional
            Validation rows; their loss per tree is ``eval_history_``.
        early_stopping_rounds : int, optional
            Keep the trees up to the best validation loss once it has not improved for
            this many trees (needs ``eval_set``).
        align : {"all", "any"}
            With several holders: train on the enterprises every holder serves ("all"), or
            on those at least one serves ("any"): a holder's features are then missing for
            the enterprises it does not serve, and nothing of them reaches it but one
            encrypted (g, h) sum per node, which it adds to its missing bins; its splits send
            them where they send missing values, as scoring does.

        Returns
        -------
        self
        """
        return self._fit_federated(X, y, holder, holders=holders, id_column=id_column,
                                   sample_weight=sample_weight, eval_set=eval_set,
                                   early_stopping_rounds=early_stopping_rounds,
                                   eval_id_column=id_column, align=align)

    def _fit_aligned(self, session, Xa, ya, *, weights=None, rows=None, eval_set=None,
                     early_stopping_rounds=None, eval_id_column=None):
        rows = np.arange(len(Xa)) if rows is None else rows
        return fit_boosting(self, session, Xa, ya, weights, rows, eval_set=eval_set,
                            early_stopping_rounds=early_stopping_rounds,
                            eval_id_column=eval_id_column)

    def _tree_scores(self, group, tree: Tree, tree_id: int, bins, ids) -> np.ndarray:
        """One tree's scores of ``ids`` during training (``group``: the fit's sessions)."""
        holder = None
        for s in ([] if tree_id == BANK_ONLY else group.sessions):
            mat = steps.leaf_masks(s, ids, [tree_id])[tree_id]
            holder = mat if holder is None else holder & mat
        return _combine(tree, bins, self.mapper_.n_bins, holder)

    # -- prediction -------------------------------------------------------------------------------
    def _scores(self, X, holder, id_column):
        """Raw scores per row (log-odds of default for the classifier) and the holder's
        coverage; the holder answers which leaves its splits allow.

        Scoring reuses one session per channel (see :meth:`close_scoring`); the ``scoring``
        parameter chooses plain or private scoring."""
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        if self._private(len(X)):
            return private_decision_function(self, X, holder, return_coverage=True)
        bins = self.mapper_.transform(X)
        masks, covered = self._leaf_masks(X.index.tolist(), holder)
        raw = np.full(len(X), self.base_score_)
        for tree, leaf in zip(self.trees_, self._reached(bins, masks)):
            raw += tree.leaf_values()[leaf]
        return raw, covered

    def _reached(self, bins, masks: dict) -> list[np.ndarray]:
        """Per tree, each row's leaf given the holder's ``masks`` (by tree id); the trees'
        paths are compiled once per fitted or loaded model."""
        cached = getattr(self, "_paths_cache", None)
        if cached is None or len(cached[0]) != len(self.trees_) or \
                any(a is not b for a, b in zip(cached[0], self.trees_)):
            cached = self._paths_cache = (list(self.trees_), bank_paths(self.trees_))
        return reached_leaves(cached[1], bins, self.mapper_.n_bins,
                              [masks.get(t) for t in self.tree_ids_])

    def _leaf_masks(self, ids: list, holder) -> tuple[dict, np.ndarray | None]:
        """The holder's leaf masks of the federated trees and its coverage (bank-only trees
        are scored locally; a model of those alone does not ask the holder)."""
        federated = [t for t in self.tree_ids_ if t != BANK_ONLY]
        if not federated:
            return {}, None
        return parts.leaf_masks(self, ids, holder, federated)

    def explain(self, X, holder=None, *, holders=None,
                id_column: str | None = None) -> pd.DataFrame:
        """Reason codes: each feature's contribution to each row's log-odds of default.

        Saabas' decomposition along each enterprise's path (see :mod:`fedcredit.models.explain`):
        at every split on the path, the feature gets the change of the node's mean training
        output. Holder features are named as the model records them (``holder:<name>``).

        Parameters
        ----------
        X, holder, holders, id_column
            As for :meth:`decision_function`.

        Returns
        -------
        pandas.DataFrame
            Indexed by id: one column per feature (:attr:`feature_names_`), then
            ``base_value`` (the same for every row); per row they sum to the plain-scoring
            :meth:`decision_function` (``fedcredit.models.explain.explained_score``).
            :func:`fedcredit.models.explain.top_reasons` picks the adverse-action reasons.

        The path needs the holder's plain leaf masks (what plain scoring asks for), whatever
        the row count: a model set to ``scoring="private"`` refuses, and so does a holder
        that allows only private scoring (``PolicyViolation``).
        """
        self._check_fitted()
        self._check_scoring()
        if self.scoring == "private":
            raise InvalidInput("explain() needs each enterprise's leaf per tree, which "
                               "scoring='private' keeps from the bank: set scoring='auto' or "
                               "'plain' (set_params) to explain")
        X, _ = check_xy(X, None, id_column)
        bins = self.mapper_.transform(X)
        holder = self._holders_arg(holder, holders)
        try:
            masks, covered = self._leaf_masks(X.index.tolist(), holder)
        except PolicyViolation as e:
            raise type(e)(f"explain() needs the holder's plain leaf masks: {e}") from e
        leaves = self._reached(bins, masks)
        names = self.feature_names_
        contributions, roots = saabas(self.trees_, leaves, len(self.feature_names_bank_),
                                      len(names), parts.feature_columns(self))
        out = explanation_frame(contributions, self.base_score_ + roots, names, X.index,
                                LOG_ODDS)
        out.attrs["holder_covered"] = covered  # per row: the holder had data and consent
        return out

    # -- introspection ----------------------------------------------------------------------------
    @property
    def feature_names_(self) -> list[str]:
        """The bank's features, then each holder's (``holder:<feature>`` with one holder,
        ``<holder name>:<feature>`` with several)."""
        self._check_fitted()
        return list(self.feature_names_bank_) + parts.holder_feature_names(self)

    def feature_importance(self, importance_type: str = "gain") -> pd.Series:
        """Split count ("split") or total gain ("gain") per feature, holder features named as
        the holder publishes them (prefixed ``holder:``)."""
        if importance_type not in ("gain", "split"):
            raise InvalidInput("importance_type must be 'gain' or 'split'")
        names = self.feature_names_
        first = parts.feature_columns(self)
        out = np.zeros(len(names))
        for tree in self.trees_:
            for nd in tree.nodes:
                if nd.owner == "leaf":
                    continue
                j = nd.feature if nd.owner == "bank" else first[nd.holder] + nd.feature
                out[j] += nd.gain if importance_type == "gain" else 1
        return pd.Series(out, index=names, name=importance_type).sort_values(ascending=False)

    @property
    def feature_importances_(self) -> np.ndarray:
        imp = self.feature_importance("gain").reindex(self.feature_names_).to_numpy()
        total = imp.sum()
        return imp / total if total > 0 else imp

    # -- persistence: the bank's bins, splits and leaf values; the holder's model id ---------------
    def _state(self) -> dict:
        return {"base_score": self.base_score_, "mapper": self.mapper_.to_dict(),
                "trees": [t.to_dict() for t in self.trees_], "tree_ids": self.tree_ids_,
                "model_id": self.model_id_, "holder_name": self.holder_name_,
                "holder_features": self.holder_feature_names_,
                "holders": [p.to_dict() for p in parts.holder_parts(self)]}

    def _restore(self, d: dict, fmt: str) -> None:
        self.base_score_ = float(d["base_score"])
        self.mapper_ = BinMapper.from_dict(d["mapper"])
        self.feature_names_bank_ = list(self.mapper_.feature_names)
        self.trees_ = [Tree.from_dict(t) for t in d["trees"]]
        self.tree_ids_ = list(d["tree_ids"])
        self.holder_name_ = d["holder_name"]
        self.holder_feature_names_ = list(d["holder_features"])
        self.model_id_ = d["model_id"]
        self.holders_ = [HolderPart.from_dict(h) for h in d.get("holders", [])] or \
            parts.holder_parts(self)  # files before several holders: the one holder


def _combine(tree: Tree, bank_bins, n_bins, holder_masks: np.ndarray | None) -> np.ndarray:
    """Leaf value per row; ``holder_masks`` None for a bank-only tree (no holder split)."""
    return tree.leaf_values()[tree.reached_leaves(bank_bins, n_bins, holder_masks)]


class SecureBoostClassifier(SecureBoostModel, FederatedClassifier):
    """Binary classifier (1 = default) trained jointly with a credit-data holder:
    SecureBoost on the log-loss, scored as log-odds of default. Parameters as
    :class:`SecureBoostModel` (``class_weight`` included)."""
