"""Pure tensor functions that build and transform the model's graphs (no Lightning, no I/O).

Sparse matrices are coalesced torch COO tensors unless a function says otherwise; nothing here
builds a dense |I| x |I| or |U| x |I| matrix.
"""

from slifmr.graphs.adjacency import SparseOperator, bipartite_adjacency, csr_mm, csr_pair, sym_normalize, to_csr
from slifmr.graphs.kg import add_inverse, kg_propagate, segment_softmax
from slifmr.graphs.knn import knn_adjacency, knn_graph, laplacian_normalize
from slifmr.graphs.pruning import degree_keep_prob, n_kept, prune_edges
from slifmr.graphs.similarity import degree_gini, edge_jaccard, edge_overlap

__all__ = [
    "SparseOperator",
    "add_inverse",
    "bipartite_adjacency",
    "csr_mm",
    "csr_pair",
    "degree_gini",
    "degree_keep_prob",
    "edge_jaccard",
    "edge_overlap",
    "kg_propagate",
    "knn_adjacency",
    "knn_graph",
    "laplacian_normalize",
    "n_kept",
    "prune_edges",
    "segment_softmax",
    "sym_normalize",
    "to_csr",
    
]
