"""Local quantile binning and feature preparation: each party bins its own features; bin
edges never leave their owner.

Trees are grown in bin space (as scikit-learn's histogram gradient boosting does): a split is
"bin <= t goes left". Only the party that owns a feature can turn ``t`` back into a real
threshold, which is exactly the privacy boundary between bank and holder.
"""
from .mapper import BinMapper, FeatureBins
from .prep import FeaturePrep, quantize

__all__ = ["BinMapper", "FeatureBins", "FeaturePrep", "quantize"]
