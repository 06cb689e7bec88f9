"""Vertical federated SecureBoost: grower, splitter, trees and the estimator."""
from .estimator import SecureBoostClassifier
from .tree import Node, Tree

__all__ = ["Node", "SecureBoostClassifier", "Tree"]
