"""Tagging: zero-shot tags from a label list with a retrieval model, and trained multi-label taggers.

Importing this package is cheap; torch and transformers are imported by the functions that need them.
"""
