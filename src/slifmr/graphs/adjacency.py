"""The user-item interaction graph (Eq. 1, 18) and its symmetric normalisation (Eq. 7).

Conventions: sparse matrices are coalesced torch COO tensors; node ids of the bipartite graph
are users ``0..U-1`` followed by items ``U..U+I-1``. Nothing here builds a dense ``(n, n)``
matrix.

``torch.sparse.mm(A, X)`` forward + backward on CPU (95k x 95k graph, 1.7M non-zeros, X (95k, 64)
requiring grad; 2 shared threads, so absolute numbers are inflated, ratios held across runs):
COO 0.68-1.73 s; CSR 0.76-1.57 s (forward 2-3x faster than COO, backward slower: autograd
transposes the CSR operand on every call); :func:`csr_mm` (CSR forward, precomputed CSR of
``A^T`` for the backward) 0.36-0.76 s, about 2x faster than COO. COO stays the storage
format; ``csr_pair`` + ``csr_mm`` is the fast path for a constant graph.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

# torch's one "Sparse CSR tensor support is in beta" notice, silenced once at import. Not with a
# catch_warnings() block per graph build: every filter change resets Python's show-once registry,
# so each build made every third-party warning print again (once per epoch).
CSR_BETA = "Sparse CSR tensor support is in beta"
warnings.filterwarnings("ignore", message=CSR_BETA)


def _coo(indices: Tensor, values: Tensor, size: tuple[int, int], coalesced: bool = False) -> Tensor:
    """A COO tensor; ``coalesced=True`` promises indices are sorted and unique (skips a sort)."""
    if coalesced:
        return torch.sparse_coo_tensor(indices, values, size, is_coalesced=True, check_invariants=False)
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()


def bipartite_adjacency(
    users: Tensor,
    items: Tensor,
    n_users: int,
    n_items: int,
    item_item: Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The symmetric interaction graph ``A = [[0, R], [R^T, G]]`` (Eq. 1; Eq. 18 with ``G``).

    Args:
        users: (n,) int64 user ids in ``[0, n_users)``.
        items: (n,) int64 item ids in ``[0, n_items)``; ``(users[e], items[e])`` is one interaction.
            Repeated pairs are merged (R is binary: every R entry is 1).
        n_users, n_items: U and I.
        item_item: optional sparse (I, I) graph placed in the item-item corner with its own
            values (the self-loop graph G^n of Eq. 18); ``None`` leaves the corner empty.
        dtype: value dtype when ``item_item`` is None (otherwise ``item_item``'s dtype).

    Returns:
        (U+I, U+I) coalesced COO; users are rows/cols ``0..U-1``, item ``i`` is ``U + i``.
    """
    users = users.reshape(-1).long()
    items = items.reshape(-1).long()
    if users.shape != items.shape:
        raise ValueError(f"users {tuple(users.shape)} and items {tuple(items.shape)} differ in length")
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_users):
        raise ValueError(f"user ids must lie in [0, {n_users})")
    if items.numel() and (int(items.min()) < 0 or int(items.max()) >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items})")
    n = n_users + n_items
    device = users.device
    if item_item is not None:
        dtype = item_item.dtype
    # unique (user, item) pairs, sorted by user then item
    pair_keys = torch.unique(users * n_items + items)
    u, i = pair_keys // n_items, pair_keys % n_items + n_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    values = torch.ones(rows.numel(), dtype=dtype, device=device)
    if item_item is not None:
        if tuple(item_item.shape) != (n_items, n_items):
            raise ValueError(f"item_item must be ({n_items}, {n_items}), got {tuple(item_item.shape)}")
        g = item_item.coalesce().to(device)
        gi = g.indices()
        rows = torch.cat([rows, gi[0] + n_users])
        cols = torch.cat([cols, gi[1] + n_users])
        values = torch.cat([values, g.values().to(dtype)])
    # the R, R^T and G blocks are disjoint, so coalescing only sorts (nothing is summed)
    return _coo(torch.stack([rows, cols]), values, (n, n))


def sym_normalize(adj: Tensor) -> Tensor:
    """``D^-1/2 A D^-1/2`` with ``D = diag(row sums of A)`` (Eq. 4, 7).

    Rows whose sum is <= 0 get a zero scale (no NaN/inf): their entries, and the entries of
    their column, become 0 (kept as explicit zeros). Differentiable in ``adj``'s values.

    Args:
        adj: (n, n) sparse COO (coalesced or not).

    Returns:
        (n, n) coalesced COO with the same sparsity pattern as ``adj.coalesce()``.
    """
    if adj.layout != torch.sparse_coo:
        raise ValueError(f"sym_normalize expects a sparse COO tensor, got {adj.layout}")
    if adj.shape[0] != adj.shape[1]:
        raise ValueError(f"sym_normalize expects a square matrix, got {tuple(adj.shape)}")
    adj = adj.coalesce()
    idx, val = adj.indices(), adj.values()
    n = adj.shape[0]
    deg = torch.zeros(n, dtype=val.dtype, device=val.device).index_add(0, idx[0], val)
    pos = deg > 0
    d_inv_sqrt = torch.where(pos, deg.clamp_min(torch.finfo(deg.dtype).tiny).rsqrt(), torch.zeros_like(deg))
    new_val = d_inv_sqrt[idx[0]] * val * d_inv_sqrt[idx[1]]
    return _coo(idx, new_val, (n, n), coalesced=True)


def to_csr(adj: Tensor) -> Tensor:
    """(n, m) sparse COO (or CSR) -> the same matrix as a sparse CSR tensor.

    CSR makes the *forward* ``torch.sparse.mm(A, X)`` about 2x faster on CPU, but autograd's
    backward with a CSR operand is slower than COO's (see the module docstring): for
    training, use :func:`csr_pair` + :func:`csr_mm`, or plain COO.
    """
    csr = adj if adj.layout == torch.sparse_csr else adj.coalesce().to_sparse_csr()
    return csr_int32(csr)


def csr_int32(csr: Tensor) -> Tensor:
    """The CSR tensor with int32 row offsets and columns (when nnz fits): the CPU's sparse kernels
    (MKL) and cuSPARSE work on int32, so int64 indices are converted on *every* product (two copies
    of the index arrays, 6 ATen calls); converted once here instead. Same values, same result."""
    crow, col = csr.crow_indices(), csr.col_indices()
    if crow.dtype == torch.int32 or col.numel() >= 2**31 - 1:
        return csr
    return torch.sparse_csr_tensor(crow.int(), col.int(), csr.values(), csr.shape, check_invariants=False)


def csr_pair(adj: Tensor) -> tuple[Tensor, Tensor]:
    """(n, m) sparse -> ``(A, A^T)`` as CSR tensors, for :func:`csr_mm`."""
    coo = adj.to_sparse_coo() if adj.layout != torch.sparse_coo else adj
    coo = coo.coalesce()
    # the transpose as a new tensor, not the view ``coo.t()``: a view of a normal tensor fails
    # under torch.inference_mode ("Cannot set version_counter"), where Lightning tests/validates
    n, m = coo.shape
    coo_t = torch.sparse_coo_tensor(coo.indices().flip(0), coo.values(), (m, n), check_invariants=False)
    return to_csr(coo), to_csr(coo_t)


class _CsrMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:  # noqa: D401
        ctx.a_t = a_t
        return torch.sparse.mm(a, x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        return None, None, torch.sparse.mm(ctx.a_t, grad.contiguous())


def csr_mm(a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:
    """``A @ X`` for a *constant* sparse ``A`` (no gradient to its values), gradient to ``X``.

    Args:
        a: (n, m) CSR; a_t: (m, n) CSR holding ``A^T`` (from :func:`csr_pair`; for a symmetric
            graph ``a_t`` may be ``a`` itself).
        x: (m, d) dense.

    Returns:
        (n, d) dense. The backward is ``A^T @ grad`` with the precomputed ``a_t`` (autograd's
        default transposes a CSR operand on every call, which is what makes it slow).
    """
    if a.layout != torch.sparse_csr or a_t.layout != torch.sparse_csr:
        raise ValueError("csr_mm expects CSR tensors (see csr_pair)")
    return _CsrMM.apply(a.detach(), a_t.detach(), x)


class SparseOperator:
    """A constant sparse matrix as a fast ``@`` operator: CSR forward, precomputed-transpose
    backward (``csr_mm``). Encoders write ``graph @ x`` and accept this or a sparse tensor."""

    def __init__(self, adj: Tensor, symmetric: bool = False):
        coo = adj.coalesce()
        self.shape = tuple(coo.shape)
        self.a, self.a_t = csr_pair(coo)
        if symmetric:
            self.a_t = self.a

    def __matmul__(self, x: Tensor) -> Tensor:
        return csr_mm(self.a, self.a_t, x)

    def to(self, device: torch.device | str) -> "SparseOperator":
        out = object.__new__(SparseOperator)
        out.shape, out.a, out.a_t = self.shape, self.a.to(device), self.a_t.to(device)
        return out
