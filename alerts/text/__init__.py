"""Text analysis below both matching and regions: folding, tokens, stems.

Queries, article documents and the gazetteer all compare words the same way;
keeping that here lets ``alerts.regions`` and ``alerts.matching`` share it
without importing each other.
"""

from alerts.text.analysis import Token, fold, normalise_language, stem, tokenize

__all__ = ["Token", "fold", "normalise_language", "stem", "tokenize"]
