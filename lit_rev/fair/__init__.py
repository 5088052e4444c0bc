"""GRAD (Raff & Sylvester 2018): gradient reversal against discrimination.

The slice holds GRAD's Lightning modules, its baselines (Vanilla, ALFR, LFR, VFA, and
fairlearn's ExponentiatedGradient and ThresholdOptimizer), the fairness metrics and the
leakage probe. See docs/fair.md.
"""

from lit_rev.fair.reversal import GradientReversal
from lit_rev.lazy import lazy_names

# Built on Lightning or torchmetrics: loaded on first use.
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "lit_rev.fair.base": ("FairModule",),
        "lit_rev.fair.baselines": ("ALFRModule", "LFRModule"),
        "lit_rev.fair.fairlearn_baselines": (
            "ExponentiatedGradientModule",
            "ThresholdOptimizerModule",
        ),
        "lit_rev.fair.grad": ("FrozenEncoderClassifier", "GRADModule"),
        "lit_rev.fair.metrics": (
            "Consistency",
            "Delta",
            "DemographicParityDifference",
            "Discrimination",
            "EqualizedOddsDifference",
            "PositiveRate",
        ),
        "lit_rev.fair.vfa": ("VFAModule",),
    },
)

__all__ = [
    "ALFRModule",
    "Consistency",
    "Delta",
    "DemographicParityDifference",
    "Discrimination",
    "EqualizedOddsDifference",
    "ExponentiatedGradientModule",
    "FairModule",
    "FrozenEncoderClassifier",
    "GRADModule",
    "GradientReversal",
    "LFRModule",
    "PositiveRate",
    "ThresholdOptimizerModule",
    "VFAModule",
]
