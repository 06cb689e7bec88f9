"""Estimators a bank risk team uses: SecureBoost, hetero logistic regression, WOE/IV, scorecards."""
from .logistic import HeteroLogisticRegression
from .secureboost import SecureBoostClassifier

__all__ = ["HeteroLogisticRegression", "SecureBoostClassifier"]
