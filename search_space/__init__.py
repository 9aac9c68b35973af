"""What a network can be: genotypes, the search space, the exact cost model, the torch builder.

Importing this package does not import torch; `search_space.model` does.
"""
from .cost import Cost, ModelSizeError, activation_elements, check_size, cost, layer_cost, size_limits
from .genotype import Genotype, GenotypeError, Stage, Stem, parse
from .references import REFERENCES, load_genotype, reference
from .rounding import round_channels, round_layers, round_resolution, scale_genotype, se_channels
from .space import Decision, SearchSpace, SpaceError, as_decisions, default_space_path, load_space

__all__ = [
    "Cost", "cost", "layer_cost", "ModelSizeError", "activation_elements", "check_size", "size_limits",
    "Genotype", "GenotypeError", "Stage", "Stem", "parse", "REFERENCES",
    "reference", "load_genotype", "round_channels", "round_layers", "round_resolution", "scale_genotype", "se_channels",
    "Decision", "SearchSpace", "SpaceError", "as_decisions", "default_space_path", "load_space",
]
