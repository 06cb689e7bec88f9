"""Vertical federated SecureBoost: grower, splitter, trees, the classifier and the regressor."""
from .estimator import SecureBoostClassifier, SecureBoostModel
from .regressor import SecureBoostRegressor
from .tree import Node, Tree

__all__ = ["Node", "SecureBoostClassifier", "SecureBoostModel", "SecureBoostRegressor", "Tree"]
