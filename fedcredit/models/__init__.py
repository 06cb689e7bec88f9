"""Estimators a bank risk team uses: SecureBoost, hetero logistic regression, WOE/IV, scorecards."""
from .secureboost import SecureBoostClassifier

__all__ = ["SecureBoostClassifier"]
