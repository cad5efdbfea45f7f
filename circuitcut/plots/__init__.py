"""Plotly views of pruning runs and subnetworks; every view takes results and returns a ``go.Figure``.

=========================  ===============================================================
view                       shows
=========================  ===============================================================
``neurons_per_layer``      removed / masked neurons per layer and site kind, counts and %
``importance_heatmap``     layer x neuron score or importance (log colour), optional sort
``importance_scatter``     forget vs retain importance per neuron, pruned set in red
``pruning_curves``         forget / retain accuracy and perplexity vs percent pruned
``drop_curves``            forget drop vs retain drop (selective and random)
``neuron_contexts``        a neuron's top-activating contexts (``circuitcut.contexts``)
``subnetwork_anatomy``     subnetwork share per layer and weight matrix / neuron kind
``jaccard_matrix``         pairwise overlap of several subnetworks
``overlap_per_layer``      per-layer overlap of pairs, against the random-set level
``overlap_counts``         only-A / both / only-B per layer (e.g. selective vs learned)
``subnetwork_effect``      remaining-model perplexity and top-10 vs random masks
``training_curves``        subnetwork loss terms and sparsity per training step
``selection_curves``       validation figures the rule that picks the final mask reads
``tradeoff``               target suppression against control damage, runs side by side
``relearn_curves``         forget / retain metric vs fine-tuning steps after each removal
``family_generalisation``  a subnetwork's effect on other facts of its family and a sibling family
``duel_scatter``           target damage vs control damage per method and task (``circuitcut duel``)
=========================  ===============================================================

``save_figure(fig, out_dir, name)`` writes HTML and PNG, the HTML with a ``plotly.min.js`` beside it (once per
folder, so it opens offline); :mod:`circuitcut.figures` runs the experiments behind the documentation figures
(``circuitcut figures``).
"""

from circuitcut.plots._common import save_figure
from circuitcut.plots.duel import duel_scatter
from circuitcut.plots.neurons import importance_heatmap, importance_scatter, neuron_contexts, neurons_per_layer
from circuitcut.plots.pruning import drop_curves, pruning_curves
from circuitcut.plots.robustness import family_generalisation, relearn_curves
from circuitcut.plots.subnetworks import (
    jaccard_matrix, overlap_counts, overlap_per_layer, overlap_summary, selection_curves, subnetwork_anatomy,
    subnetwork_effect, tradeoff, training_curves,
)


__all__ = [
    "drop_curves", "duel_scatter", "family_generalisation", "importance_heatmap", "importance_scatter", "jaccard_matrix",
    "neuron_contexts", "neurons_per_layer", "overlap_counts", "overlap_per_layer", "overlap_summary", "pruning_curves", "relearn_curves", "save_figure",
    "selection_curves", "subnetwork_anatomy", "subnetwork_effect", "training_curves", "tradeoff",
]
