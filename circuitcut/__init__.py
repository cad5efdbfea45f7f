"""circuitcut: find, remove and compare the parts of a language model that carry a capability.

The public API, one name per job (each has a runnable example in its docstring):

- :func:`load_model`: a TransformerLens ``TransformerBridge``, offline for the embedded default.
- :func:`corpus_windows`: token windows of a named corpus, with disjoint stats/eval splits.
- :func:`collect_stats`: streaming per-neuron statistics collected by hooks.
- :class:`NeuronMask`: removed neurons, ``remaining(model)`` as hooks or ``remove_from(model)`` as weight
  surgery, saved with the model shape.
- :class:`PruningConfig`, :func:`prune`, :class:`PruningResult`: selective pruning.
- :class:`SubnetworkConfig`, :func:`find_subnetwork`, :class:`SubnetworkResult`: knowledge-critical
  subnetworks.
"""

from circuitcut.data.corpora import corpus_windows
from circuitcut.masks import NeuronMask
from circuitcut.models import load_model
from circuitcut.pruning import PruningConfig, PruningResult, prune
from circuitcut.stats import collect_stats
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkResult, find_subnetwork

__all__ = [
    "load_model",
    "corpus_windows",
    "collect_stats",
    "NeuronMask",
    "PruningConfig",
    "prune",
    "PruningResult",
    "SubnetworkConfig",
    "find_subnetwork",
    "SubnetworkResult",
]
