"""Command-line entry points beyond ``python -m lit_rev`` (analyses, result tables, figures).

Each module here is a thin ``main()`` around pure functions of the slices; the slices
(``lit_rev.density``, ``lit_rev.revnet``, ``lit_rev.fair``, ``lit_rev.data``) never import it.
"""
