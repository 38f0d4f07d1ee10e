"""k-nearest-neighbour mutual-information estimators, vectorised in torch, results in nats.

* :func:`ksg_mi` - Kraskov, Stoegbauer & Grassberger (2004) for continuous X and Y, algorithm 1
  (``variant=1``, strict counts) or 2 (``variant=2``). Distances in the joint space are the
  maximum of the two marginal distances; each marginal norm is ``max`` or ``euclidean``.
* :func:`ross_mi` - Ross (2014) for continuous X and discrete labels Y: the estimator that fits
  "activations vs. labels". Never above :func:`label_entropy_ceiling`, ~0 under independence
  at any dimension.

Pairwise distances are computed in row chunks (no Python loop over points), on whatever device
X is on; Ross's Euclidean counts rank squared distances with one float32 matrix product and
recompute in float64 only the few pairs that its proven error bound cannot decide. Inputs are
optionally standardised per column, then jittered with seeded Gaussian noise of relative size
``jitter`` (after the cast to float64, so 1e-10 is not lost in float32 activations); this is
scikit-learn's recipe, so on 1-D inputs the results equal ``mutual_info_regression`` /
``mutual_info_classif`` given the same jittered data.

Usage::

    x = torch.randn(1000, 2); y = 0.9 * x + 0.44 * torch.randn(1000, 2)
    ksg_mi(x, y)                            # 1.6-1.7 nats (true 1.646: correlation 0.898 in each of 2 dims)
    ross_mi(activations, labels, k=3)       # I(H; Y) of a layer, activations [N, ...]
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import torch
from scipy.linalg.blas import dsyrk, ssyrk
from threadpoolctl import ThreadpoolController

NORMS = ("max", "euclidean")
CHUNK_ELEMENTS = 1 << 22  # rows per chunk x N distances held at once (32 MB in float64)
GRAM_BLOCK = 512  # columns per partial product in gram()
SYRK_MIN_WIDTH = 256  # narrower: a full matrix product is cheaper than symmetrising syrk's triangle
PAIR_CHUNK_ELEMENTS = 1 << 16  # pairs x D differences at once: small blocks stay in cache (5x faster)
# Up to this many pairwise entries (N <= 2048) the CPU passes are too short for threads to pay: one thread,
# torch's and BLAS's. On a busy machine every OpenMP barrier also waits for a descheduled thread (measured
# N = 1000, d = 500 on the loaded 2-core machine: 2 threads 970 ms, 1 thread 155 ms).
SERIAL_ELEMENTS = 1 << 22
_WORKSPACES = threading.local()  # see _workspace


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


@contextmanager
def serial_when_small(n: int, device: torch.device):
    """Run the block on one CPU thread (torch and BLAS) when an N x N problem is small; else leave threads alone."""
    if device.type != "cpu" or n * n > SERIAL_ELEMENTS or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_threads().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def prepare(x: torch.Tensor, standardize: bool = True, jitter: float = 1e-10, seed: int = 0) -> torch.Tensor:
    """[N, ...] -> float64 [N, D] (a new tensor when scaled or jittered): optionally divided by each
    column's std, plus seeded jitter.

    Like scikit-learn: ``x / std`` (columns with std 0 left alone), then
    ``jitter * max(1, mean|x|) * normal`` per column, drawn on the CPU so every device gets
    the same noise for the same seed.
    """
    x = x.detach().reshape(len(x), -1).to(torch.float64, copy=bool(standardize or jitter))
    if standardize:
        std = column_std(x)
        x /= torch.where(std > 0, std, torch.ones_like(std))
    if jitter:  # float32 draws (5x faster than float64 ones) are plenty for noise
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device)
        scale = jitter * (torch.linalg.vector_norm(x, 1, dim=0) / len(x)).clamp(min=1.0)
        for start, stop in chunks(len(x), x.shape[1], PAIR_CHUNK_ELEMENTS):  # small float64 copies: in cache
            x[start:stop].addcmul_(noise[start:stop].to(torch.float64), scale)
    return x


def column_std(x: torch.Tensor) -> torch.Tensor:
    """The population std of each column of [N, D]: mean first, then squared deviations summed a cache-sized block
    of rows at a time (torch's ``std(dim=0)`` walks the columns with a stride: 5x slower at N = 1,000, D = 500)."""
    mean = x.sum(dim=0).div_(len(x))
    squares = torch.zeros_like(mean)
    for start, stop in chunks(len(x), x.shape[1], PAIR_CHUNK_ELEMENTS):
        squares += (x[start:stop] - mean).square_().sum(dim=0)
    return squares.div_(len(x)).sqrt_()


def pairwise(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """Distances [len(a), len(b)] under the max (Chebyshev) or Euclidean norm.

    Euclidean distances go through a matrix product (|a|^2 + |b|^2 - 2 a.b): fast, but blind to
    distances below ~1e-8 |a| (:func:`ross_mi` does not use this; its Euclidean counts are exact).
    """
    if a.shape[1] == 1:
        return (a - b.T).abs()
    if norm == "max":
        return torch.cdist(a, b, p=float("inf"))
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def chunks(n: int, width: int, elements: int | None = None):
    """Row ranges such that a [rows, width] block has about ``elements`` (CHUNK_ELEMENTS) entries."""
    step = max(1, (elements or CHUNK_ELEMENTS) // max(width, 1))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _without_self(distances: torch.Tensor, start: int) -> torch.Tensor:
    """Set d(i, i) = inf in a row chunk that starts at row ``start``."""
    rows = torch.arange(len(distances), device=distances.device)
    distances[rows, rows + start] = float("inf")
    return distances


def _check(x: torch.Tensor, n_labels: int, k: int, norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; use one of {NORMS}.")
    if len(x) != n_labels:
        raise ValueError(f"X has {len(x)} samples but Y has {n_labels}; give one Y per sample.")
    if not 1 <= k < len(x):
        raise ValueError(f"k={k} must be at least 1 and below the number of samples ({len(x)}).")


def ksg_mi(x: torch.Tensor, y: torch.Tensor, k: int = 3, variant: int = 1, norm: str = "max",
           standardize: bool = True, jitter: float = 1e-10, seed: int = 0) -> float:
    """KSG estimate of I(X; Y) in nats for continuous X [N, ...] and Y [N, ...].

    Algorithm 1: psi(k) + psi(N) - <psi(n_x + 1) + psi(n_y + 1)>, n_x counting points strictly
    closer than the joint k-th neighbour distance. Algorithm 2: psi(k) - 1/k + psi(N) -
    <psi(n_x) + psi(n_y)>, n_x counting points within the largest marginal distance among
    the k joint neighbours.
    """
    _check(x, len(y), k, norm)
    if variant not in (1, 2):
        raise ValueError(f"variant={variant} is not known; use 1 or 2 (KSG algorithm 1 or 2).")
    # Different seeds for X and Y, so that X = Y does not get identical noise.
    x = prepare(x, standardize, jitter, seed)
    y = prepare(y, standardize, jitter, seed + 1).to(x.device)
    n = len(x)
    counts_x = torch.empty(n, dtype=torch.float64, device=x.device)
    counts_y = torch.empty_like(counts_x)
    for start, stop in chunks(n, n):
        dx = _without_self(pairwise(x[start:stop], x, norm), start)
        dy = _without_self(pairwise(y[start:stop], y, norm), start)
        joint = torch.maximum(dx, dy)
        if variant == 1:
            radius = joint.kthvalue(k, dim=1, keepdim=True).values
            strictly_inside = torch.nextafter(radius, torch.zeros_like(radius))
            counts_x[start:stop] = (dx <= strictly_inside).sum(1)
            counts_y[start:stop] = (dy <= strictly_inside).sum(1)
        else:
            neighbours = joint.topk(k, dim=1, largest=False).indices
            radius_x = dx.gather(1, neighbours).max(1, keepdim=True).values
            radius_y = dy.gather(1, neighbours).max(1, keepdim=True).values
            counts_x[start:stop] = (dx <= radius_x).sum(1)
            counts_y[start:stop] = (dy <= radius_y).sum(1)
    psi = torch.special.digamma
    n_k = torch.tensor([float(n), float(k)], dtype=torch.float64)
    if variant == 1:
        mi = psi(n_k).sum() - (psi(counts_x + 1) + psi(counts_y + 1)).mean().cpu()
    else:
        mi = psi(n_k).sum() - 1.0 / k - (psi(counts_x) + psi(counts_y)).mean().cpu()
    return float(mi)


def label_entropy_ceiling(y: torch.Tensor) -> float:
    """psi(N) - <psi(N_c)> over the samples of classes with at least two members: the largest
    value :func:`ross_mi` can return on these labels (close to the label entropy H(Y))."""
    _, inverse, class_sizes = torch.unique(y.reshape(-1).cpu(), return_inverse=True, return_counts=True)
    sizes = class_sizes[inverse].to(torch.float64)
    sizes = sizes[sizes > 1]
    psi = torch.special.digamma
    return float(psi(torch.tensor(float(len(sizes)), dtype=torch.float64)) - psi(sizes).mean())


def ross_mi(x: torch.Tensor, y: torch.Tensor, k: int = 3, norm: str = "euclidean", standardize: bool = True,
            jitter: float = 1e-10, seed: int = 0, ranking: torch.dtype | None = None) -> float:
    """Ross's estimate of I(X; Y) in nats for continuous X [N, ...] and discrete labels Y [N].

    I = psi(N) - <psi(N_y)> + psi(k) - <psi(m_i)>: d_i is the distance from point i to its k-th
    neighbour within its own class, m_i the number of points of any class within d_i. Points
    whose class has a single member are left out; a class with N_c <= k uses k = N_c - 1 (as
    scikit-learn does). Euclidean is the default norm: in high dimension the max norm biases
    the estimate down far more (see docs/mutual-information.md). Euclidean counts are exact, as
    if every distance were taken by differences in float64 (see :func:`_euclidean_within_counts`);
    ``ranking`` picks the dtype of the matrix product that ranks them (default :func:`ranking_dtype`).
    """
    _check(x, len(y), k, norm)
    with serial_when_small(len(x), x.device):
        return _ross_mi(x, y, k, norm, standardize, jitter, seed, ranking)


def _ross_mi(x, y, k, norm, standardize, jitter, seed, ranking) -> float:
    labels = y.reshape(-1).to(x.device)
    _, inverse, class_sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    keep = class_sizes[inverse] > 1
    if not keep.any():
        raise ValueError("every class of Y has a single sample; Ross's estimate needs two samples of some class.")
    x = prepare(x, standardize, jitter, seed)
    if not keep.all():
        x, labels = x[keep], labels[keep]
    sizes = class_sizes[inverse][keep].to(torch.float64)
    k_per_point = sizes.clamp(max=k + 1).long()[:, None] - 1
    if norm == "euclidean":
        within = _euclidean_within_counts(x, labels, k_per_point, k, ranking)
    else:
        within = _max_norm_within_counts(x, labels, k_per_point, k)
    psi = torch.special.digamma
    n = torch.tensor(float(len(x)), dtype=torch.float64, device=x.device)
    mi = psi(n) - psi(sizes).mean() + psi(k_per_point.to(torch.float64)).mean() - psi(within).mean()
    return float(mi)


def _max_norm_within_counts(x, labels, k_per_point, k):
    """m_i for the max norm: exact Chebyshev distances, in row chunks."""
    within = torch.empty(len(x), dtype=torch.float64, device=x.device)
    for start, stop in chunks(len(x), len(x)):
        distances = _without_self(pairwise(x[start:stop], x, "max"), start)
        same_class = labels[start:stop, None] == labels[None, :]
        nearest_same = distances.masked_fill(~same_class, float("inf")).topk(k, dim=1, largest=False).values
        radius = nearest_same.gather(1, k_per_point[start:stop] - 1)
        within[start:stop] = (distances <= radius).sum(1)
    return within


def ranking_dtype(device: torch.device) -> torch.dtype:
    """float32 where float32 matrix products are full IEEE float32 (twice as fast as float64), else float64."""
    full_float32 = device.type == "cpu" or torch.get_float32_matmul_precision() == "highest"
    return torch.float32 if full_float32 else torch.float64


def gram(a: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ a.T [N, N], into ``out`` when given, summed over blocks of GRAM_BLOCK columns: the rounding
    error then grows with the block width plus the number of blocks, not with the whole width. On the
    CPU, blocks of at least SYRK_MIN_WIDTH columns go through BLAS syrk, which computes one triangle
    (half the work); the other is copied from it."""
    out = a.new_empty(len(a), len(a)) if out is None else out
    symmetric = a.device.type == "cpu" and a.shape[1] >= SYRK_MIN_WIDTH
    syrk = ssyrk if a.dtype == torch.float32 else dsyrk
    for start in range(0, a.shape[1], GRAM_BLOCK):
        block = a[:, start:start + GRAM_BLOCK]
        if symmetric and start == 0:  # out.numpy().T is out in Fortran order: syrk's upper triangle is out's lower
            syrk(1.0, block.numpy().T, trans=1, c=out.numpy().T, overwrite_c=True)
        elif symmetric:
            out.add_(torch.from_numpy(syrk(1.0, block.numpy().T, trans=1)).T)
        elif start == 0:
            torch.mm(block, block.T, out=out)
        else:
            out.add_(block @ block.T)
    return _mirror_lower_triangle(out) if symmetric else out


def _mirror_lower_triangle(square: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Copy the lower triangle of ``square`` onto its upper one, in place, a strip of ``block`` rows at a time."""
    for start in range(0, len(square), block):
        stop = start + block
        diagonal = square[start:stop, start:stop]
        diagonal.copy_(diagonal.tril() + diagonal.tril(-1).T)
        square[start:stop, stop:] = square[stop:, start:stop].T
    return square


def _workspace(name: str, rows: int, columns: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised [rows, columns] tensor. On the CPU, up to CHUNK_ELEMENTS entries, its memory is kept for
    this thread's next call with the same name: fresh memory costs a page fault per 4 KB, which made up a third
    of the time of an N = 1,000 estimate on the 2-core machine (the CUDA allocator keeps memory by itself)."""
    if device.type != "cpu" or rows * columns > CHUNK_ELEMENTS:
        return torch.empty(rows, columns, dtype=dtype, device=device)
    kept = getattr(_WORKSPACES, name, None)
    if kept is None or kept.dtype != dtype or len(kept) < rows * columns:
        kept = torch.empty(rows * columns, dtype=dtype)
        setattr(_WORKSPACES, name, kept)
    return kept[:rows * columns].view(rows, columns)


def gram_error_factor(width: int) -> int:
    """c with |fl(a.b) - a.b| <= c u |a| |b| for :func:`gram` (u the unit roundoff): block width + blocks."""
    return min(width, GRAM_BLOCK) + -(-width // GRAM_BLOCK)


def _distances(x, rows, columns):
    """|x[rows] - x[columns]| for each pair, by differences in float64 (exact to rounding), in chunks."""
    out = torch.empty(len(rows), dtype=torch.float64, device=x.device)
    for start, stop in chunks(len(rows), x.shape[1], PAIR_CHUNK_ELEMENTS):
        out[start:stop] = torch.linalg.vector_norm(x[rows[start:stop]] - x[columns[start:stop]], dim=1)
    return out


def _kth_smallest_per_row(rows, values, ranks):
    """values[j] belongs to row rows[j] (rows sorted); the ranks[r, 0]-th smallest of each row's values."""
    counts = torch.bincount(rows, minlength=len(ranks))
    position = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]
    table = values.new_full((len(ranks), int(max(counts.max(), ranks.max()))), float("inf"))  # rows without values: inf
    table[rows, position] = values
    return table.sort(1).values.gather(1, ranks - 1)


def _euclidean_within_counts(x, labels, k_per_point, k, dtype=None):
    """m_i for the Euclidean norm [N], exactly as if every distance were taken by differences of
    ``x`` in float64 (x is not modified).

    Squared distances are ranked through one matrix product (|a|^2 + |b|^2 - 2 a.b) in ``dtype``
    (default :func:`ranking_dtype`) of a centred copy (so |a| is the spread, not the offset),
    whose error is at most e = (c + 8) u (|a| + |b|)^2 for unit roundoff u, c =
    :func:`gram_error_factor` (the worst-case bound for dot products, with the rounding of the
    inputs and of the sums), plus (D + 8) u64 (|a| + |b|)^2 for the rounding of the centring and
    of the float64 differences. With p the ranked k_i-th same-class distance, the exact one lies
    within e of p, so points ranked below p - 2e are surely inside the ball and points above
    p + 2e surely outside; the few in between are recomputed by differences of the uncentred x
    (centring in place would round away a 1e-10 jitter on data far from the mean).
    """
    n, width = x.shape
    dtype = dtype or ranking_dtype(x.device)
    order = torch.argsort(labels, stable=True)  # rows in class order: each class's columns are one slice
    labels, k_per_point = labels[order], k_per_point[order]
    mean = x.mean(dim=0)
    low = _workspace("centred", n, width, dtype, x.device)  # centred rows in class order, in cache-sized blocks
    lengths = torch.empty(n, dtype=torch.float64, device=x.device)
    block = _workspace("centred_block", next(chunks(n, width, PAIR_CHUNK_ELEMENTS))[1], width, x.dtype, x.device)
    for start, stop in chunks(n, width, PAIR_CHUNK_ELEMENTS):
        centred = torch.index_select(x, 0, order[start:stop], out=block[:stop - start]).sub_(mean)
        low[start:stop], lengths[start:stop] = centred, torch.linalg.vector_norm(centred, dim=1)
    class_ends = torch.unique_consecutive(labels, return_counts=True)[1].cumsum(0).tolist()
    whole = n * n <= CHUNK_ELEMENTS  # then one symmetric product for all rows
    bound = ((gram_error_factor(width) if whole else width) + 8) * torch.finfo(dtype).eps
    bound += (width + 8) * torch.finfo(torch.float64).eps
    margins = bound * (lengths + lengths.max()).square()  # 2e, per row
    squared_norms = lengths.square().to(dtype)
    infinity = torch.tensor(float("inf"), dtype=dtype, device=x.device)
    within = torch.empty(n, dtype=torch.float64, device=x.device)
    chunk_rows = next(chunks(n, n))[1]
    products = _workspace("products", chunk_rows, n, dtype, x.device)
    scratch = _workspace("scratch", chunk_rows, n, dtype, x.device)
    for start, stop in chunks(n, n):
        rows = torch.arange(stop - start, device=x.device)
        if whole:
            gram(low, out=products)
        else:
            torch.mm(low[start:stop], low.T, out=products[:stop - start])
        ranked = products[:stop - start]
        ranked.mul_(-2).add_(squared_norms[None, :]).add_(squared_norms[start:stop, None])
        ranked[rows, rows + start] = float("inf")
        nearest = ranked.new_full((stop - start, k), float("inf"))
        for first, last in zip([0, *class_ends[:-1]], class_ends, strict=True):
            top, bottom = max(first, start), min(last, stop)
            if top < bottom:
                same_class = ranked[top - start:bottom - start, first:last]
                nearest[top - start:bottom - start, :last - first] = same_class.topk(
                    min(k, last - first), dim=1, largest=False).values
        nearest = nearest.to(torch.float64)
        ranks, margin = k_per_point[start:stop], margins[start:stop, None]
        pivot = nearest.gather(1, ranks - 1)
        # Thresholds rounded outwards to the ranking dtype: the band can only grow.
        low_edge = torch.nextafter((pivot - margin).to(dtype), -infinity)
        high_edge = torch.nextafter((pivot + margin).to(dtype), infinity)
        # Counted as 0/1 in the ranking dtype (exact: a row has fewer than 2^24 entries); summing a bool mask
        # casts it to int64 first, 8 bytes a pair, which took longer than both comparisons.
        inside = torch.lt(ranked, low_edge, out=scratch[:stop - start]).sum(1)
        in_band = torch.le(ranked, high_edge, out=scratch[:stop - start]).sum(1).sub_(inside)
        # A row whose band holds only its k_i-th neighbour needs no exact distance: that one is inside.
        alone = in_band == 1
        undecided = torch.nonzero(~alone).flatten()
        undecided_ranked = ranked[undecided]
        band = (undecided_ranked >= low_edge[undecided]) & (undecided_ranked <= high_edge[undecided])
        row, column = torch.nonzero(band, as_tuple=True)
        row = undecided[row]
        exact = _distances(x, order[row + start], order[column])
        # The exact k_i-th same-class distance is the (k_i - same-class points surely inside)-th of
        # the band's same-class distances; those surely inside are all among the k_i - 1 nearest.
        same = labels[row + start] == labels[column]
        surely_inside = (nearest[:, :-1] < low_edge) & (torch.arange(1, k, device=x.device) < ranks)
        radius = _kth_smallest_per_row(row[same], exact[same], ranks - surely_inside.sum(1, keepdim=True))
        close_inside = (exact <= radius[row, 0]).to(torch.float64)
        counts = inside.to(torch.float64).add_(alone)
        within[order[start:stop]] = counts.index_add_(0, row, close_inside)
    return within
