"""GRAD (Raff & Sylvester 2018): gradient reversal against discrimination.

The slice holds GRAD's Lightning modules, its baselines (Vanilla, ALFR, LFR, VFA, and
fairlearn's ExponentiatedGradient and ThresholdOptimizer), the fairness metrics and the
leakage probe. See docs/fair.md.
"""

from lit_rev.fair.base import FairModule
from lit_rev.fair.baselines import ALFRModule, LFRModule
from lit_rev.fair.fairlearn_baselines import (
    ExponentiatedGradientModule,
    ThresholdOptimizerModule,
    TorchMLPClassifier,
)
from lit_rev.fair.grad import FrozenEncoderClassifier, GRADModule
from lit_rev.fair.metrics import (
    Consistency,
    Delta,
    DemographicParityDifference,
    Discrimination,
    EqualizedOddsDifference,
    PositiveRate,
)
from lit_rev.fair.reversal import GradientReversal, dann_ramp, reverse_gradient
from lit_rev.fair.vfa import VFAModule, mmd_squared

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
    "TorchMLPClassifier",
    "VFAModule",
    "dann_ramp",
    "mmd_squared",
    "reverse_gradient",
]
