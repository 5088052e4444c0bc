"""Evaluations built on top of the slices, as library code that the commands call.

A module here may import :mod:`lit_rev.config`, the slices (``lit_rev.density``,
``lit_rev.revnet``, ...) and :mod:`lit_rev.ood`; nothing in the slices imports it.
"""
