"""Estimators a bank risk team uses: SecureBoost, hetero logistic regression, WOE/IV, scorecards."""
from .logistic import HeteroLogisticRegression
from .scorecard import Scorecard
from .secureboost import SecureBoostClassifier
from .woe import HeteroWOE

__all__ = ["HeteroLogisticRegression", "HeteroWOE", "Scorecard", "SecureBoostClassifier"]
