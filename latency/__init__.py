"""Measured latency: TFLite graphs of genotypes, LiteRT lookup tables, and a phone kit.

`import latency` needs neither TensorFlow nor LiteRT; building graphs and timing them imports
`ai_edge_litert` lazily and says how to install it when it is missing.

Public API::

    predict = latency.load_predictor("lut.json", space, resolution=224, cache_dir=None)
    ms = predict(genotype)
    table = latency.LatencyTable.load("lut.json"); table.predict(genotype)
"""
from __future__ import annotations

from .errors import LatencyTableError, RuntimeMissingError
from .predictor import Predictor, load_predictor
from .table import LatencyTable

__all__ = ["LatencyTable", "LatencyTableError", "RuntimeMissingError", "Predictor", "load_predictor"]
