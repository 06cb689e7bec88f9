"""Estimators a bank risk team uses: SecureBoost (classifier and regressor), hetero logistic
regression, WOE/IV, scorecards."""
from .base import FederatedClassifier, FederatedEstimator
from .logistic import HeteroLogisticRegression
from .scorecard import Scorecard
from .secureboost import SecureBoostClassifier, SecureBoostRegressor
from .woe import HeteroWOE

__all__ = ["FederatedClassifier", "FederatedEstimator", "HeteroLogisticRegression", "HeteroWOE",
           "Scorecard", "SecureBoostClassifier", "SecureBoostRegressor"]
