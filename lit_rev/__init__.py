"""lit_rev: Lightning reproductions of three papers (density-model OOD, RevNet, GRAD)."""

__version__ = "0.1.0"
