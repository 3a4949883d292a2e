"""The mutex watershed (Wolf et al. 2018): parameter-free partitioning from attractive and repulsive edges.

This module checks the inputs and builds the edges (an explicit graph, or the implicit grid of
a volume's affinities, sorted by weight); the solver that visits them is :mod:`emseg.instances.mws_solver`.
"""

from __future__ import annotations

import numpy as np

from .mws_solver import label_roots, mws_kernel
from .relabel import smallest_uint

__all__ = ["mutex_watershed_graph", "mutex_watershed"]


def mutex_watershed_graph(n_nodes, edges, weights, is_mutex) -> np.ndarray:
    """Partition a graph with the mutex watershed.

    Parameters
    ----------
    n_nodes : int
        Number of nodes; nodes are ``0 .. n_nodes - 1``.
    edges : ndarray of int, shape (E, 2)
        The node pairs ``(u, v)``.
    weights : ndarray of float, shape (E,)
        Edge priorities, finite; higher weights are processed first.
    is_mutex : ndarray of bool, shape (E,)
        True for a repulsive (mutex) edge, False for an attractive one.

    Returns
    -------
    labels : ndarray of unsigned int, shape (n_nodes,)
        Cluster ids ``1 .. k``, numbered in order of first appearance along the nodes (node 0 is
        in cluster 1), in the smallest unsigned dtype that holds ``k``.

    Raises
    ------
    ValueError
        If the arrays have the wrong shapes, a node id is outside ``0 .. n_nodes - 1`` or a
        weight is not finite.

    Notes
    -----
    Edges are visited once, by decreasing weight; ties keep their input order (stable sort).
    Every node starts as its own cluster. An attractive edge ``(u, v)`` merges the clusters of
    ``u`` and ``v`` unless they are the same or a mutex constraint holds between them. A mutex
    edge ``(u, v)`` adds a constraint between the clusters of ``u`` and ``v`` unless they are
    already the same cluster. Constraints are inherited by the union when clusters merge.
    This is Kruskal's algorithm with mutex constraints instead of a threshold, so it needs no
    parameters; the result minimises the mutex-constrained objective of the paper [1]_.

    Clusters are kept in a union-find forest (path halving, union by rank). Each cluster has a
    list of its mutex partners and a hash table holds the constrained cluster pairs; on a merge
    the shorter partner list is re-keyed and appended to the longer one, so the whole run costs
    ``O(E log E)`` for the sort plus ``O(M log M)`` table operations for ``M`` constraints.

    References
    ----------
    .. [1] S. Wolf, C. Pape, A. Bailoni, N. Rahaman, A. Kreshuk, U. Koethe, F. A. Hamprecht,
       "The Mutex Watershed: Efficient, Parameter-Free Image Partitioning", ECCV 2018.

    Examples
    --------
    A chain ``0 - 1 - 2 - 3`` whose middle edge is weak, and a strong mutex edge between its ends:
    the mutex edge comes first, so ``1 - 2`` cannot join the halves.

    >>> edges = np.array([[0, 1], [1, 2], [2, 3], [0, 3]])
    >>> mutex_watershed_graph(4, edges, [0.9, 0.5, 0.8, 0.7], [False, False, False, True])
    array([1, 1, 2, 2], dtype=uint8)

    With a weaker mutex edge the chain merges first and the constraint comes too late.

    >>> mutex_watershed_graph(4, edges, [0.9, 0.5, 0.8, 0.1], [False, False, False, True])
    array([1, 1, 1, 1], dtype=uint8)
    """
    n_nodes = _check_n_nodes(n_nodes)
    edges = np.asarray(edges)
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2); got {edges.shape}")
    if edges.dtype.kind not in "ui" and edges.size:
        raise ValueError(f"edges must be an integer array; got {edges.dtype}")
    n_edges = len(edges)
    weights = np.asarray(weights, dtype=np.float64)
    is_mutex = np.asarray(is_mutex)
    if weights.shape != (n_edges,):
        raise ValueError(f"weights must have shape ({n_edges},) like edges; got {weights.shape}")
    if is_mutex.shape != (n_edges,):
        raise ValueError(f"is_mutex must have shape ({n_edges},) like edges; got {is_mutex.shape}")
    if is_mutex.dtype != bool:
        raise ValueError(f"is_mutex must be a boolean array; got {is_mutex.dtype}")
    if n_edges:
        if edges.min() < 0 or edges.max() >= n_nodes:
            raise ValueError(
                f"edges must hold node ids in 0 .. {n_nodes - 1} (n_nodes={n_nodes}); "
                f"got ids from {edges.min()} to {edges.max()}"
            )
        if not np.isfinite(weights).all():
            raise ValueError("weights must be finite; got NaN or infinite values")

    order = np.argsort(-weights, kind="stable")
    parent = mws_kernel(
        order, n_nodes, np.ascontiguousarray(edges, dtype=np.int64), is_mutex,
        np.int64(1), np.zeros(0, np.int64), np.int64(0), False,
    )
    labels, n_labels = label_roots(parent, np.ones(n_nodes, dtype=bool))
    return labels.astype(smallest_uint(n_labels), copy=False)


def mutex_watershed(affinities, offsets, *, n_attractive=None, strides=None, mask=None, seed=0) -> np.ndarray:
    """Segment a 2D or 3D volume from affinities with the mutex watershed.

    Parameters
    ----------
    affinities : ndarray of float, shape (C, \\*spatial)
        ``affinities[c, x]`` is the probability, in [0, 1], that voxel ``x`` and voxel
        ``x + offsets[c]`` belong to the same object -- the convention of
        ``emseg.train.targets.affinities``.
    offsets : sequence of sequences of int
        One offset per channel, ``affinities.ndim - 1`` entries each (zyx), e.g.
        ``[[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-3, 0, 0], [0, -9, 0], [0, 0, -9]]``.
    n_attractive : int, optional
        The first ``n_attractive`` channels are attractive edges with weight ``affinity``; the
        others are repulsive (mutex) edges with weight ``1 - affinity``. Default: the number of
        leading offsets whose largest absolute component is 1 (the direct neighbours).
    strides : sequence of int, optional
        Keep the repulsive edges of every ``strides[d]``-th voxel along axis ``d`` only, a regular
        grid of voxels; attractive edges are all kept. Saves time on long-range channels.
    mask : ndarray of bool, optional
        Spatial shape; voxels where it is False get label 0 and all their edges are dropped.
    seed : int, default 0
        Seeds the origin (phase) of the ``strides`` grid along each axis, drawn from
        ``numpy.random.default_rng(seed)``; unused without ``strides``.

    Returns
    -------
    labels : ndarray of unsigned int, spatial shape
        Object ids ``1 .. k`` numbered in order of first appearance in C order, 0 only outside
        ``mask``, in the smallest unsigned dtype that holds ``k``.

    Raises
    ------
    ValueError
        If the dimensions or the number of channels do not match ``offsets``, an affinity lies
        outside [0, 1] (or is NaN), ``n_attractive``, ``strides`` or ``mask`` are invalid.

    Notes
    -----
    The result equals :func:`mutex_watershed_graph` on the graph with one edge per channel ``c``
    and voxel ``x`` whose partner ``x + offsets[c]`` lies inside the volume (and inside
    ``mask``), listed in the order of the flat index of ``affinities[c, x]``, so ties between
    equal weights go to the lower channel, then the lower voxel. The edges are never stored
    as node pairs: the weights are sorted as one flat array of ``C * n_voxels`` entries and each
    edge is decoded from its flat index. Memory is about 12 bytes per channel and voxel for
    float32 affinities (16 for float64) plus about 50 bytes per voxel.

    Examples
    --------
    A row of 6 pixels with uniform attractive affinities 0.9 and repulsive edges of offset -3
    that are certain (affinity 0) only where they cross the gap between pixels 2 and 3. The
    repulsive edges come first and forbid every merge across the gap.

    >>> affs = np.full((2, 1, 6), 0.9)
    >>> affs[1, 0, 3:6] = 0.0
    >>> mutex_watershed(affs, [[0, -1], [0, -3]])
    array([[1, 1, 1, 2, 2, 2]], dtype=uint8)

    A mask removes pixels and their edges.

    >>> mutex_watershed(affs, [[0, -1], [0, -3]], mask=np.array([[1, 1, 0, 1, 1, 1]], bool))
    array([[1, 1, 0, 2, 2, 2]], dtype=uint8)
    """
    affinities = np.asarray(affinities)
    if affinities.ndim not in (3, 4):
        raise ValueError(
            f"affinities must have shape (C, *spatial) with 2 or 3 spatial axes; got shape {affinities.shape}"
        )
    if affinities.dtype.kind not in "fui" and affinities.dtype != bool:
        raise ValueError(f"affinities must be a float array; got {affinities.dtype}")
    ndim = affinities.ndim - 1
    spatial = affinities.shape[1:]
    try:
        offsets = np.asarray(offsets, dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"offsets must be a list of {ndim}-element integer vectors; got {offsets!r}") from None
    if offsets.ndim != 2 or offsets.shape[1] != ndim:
        raise ValueError(
            f"affinities has {affinities.ndim} dimensions (channels first), so each offset needs "
            f"{ndim} entries; got offsets of shape {offsets.shape}"
        )
    n_channels = affinities.shape[0]
    if n_channels != len(offsets):
        raise ValueError(f"affinities has {n_channels} channels but {len(offsets)} offsets were given")
    if affinities.size:
        lo, hi = affinities.min(), affinities.max()
        if not (lo >= 0 and hi <= 1):  # False for NaN too
            raise ValueError(f"affinities must lie in [0, 1]; got values from {lo} to {hi}")
    n_attractive = _check_n_attractive(n_attractive, offsets)
    n_voxels = int(np.prod(spatial))
    if n_voxels >= 2**31:
        raise ValueError(f"affinities must have fewer than 2**31 voxels; got {n_voxels}, process them in blocks")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != spatial:
            raise ValueError(f"mask must have the spatial shape {spatial} of affinities; got {mask.shape}")
        mask = mask.astype(bool, copy=False)
    grid = None
    if strides is not None:
        strides = _check_strides(strides, ndim)
        phase = [int(p) for p in np.random.default_rng(seed).integers(0, strides)]
        grid = np.zeros(spatial, dtype=bool)
        grid[tuple(slice(p, None, s) for p, s in zip(phase, strides))] = True

    # keys[c, x] = -weight of the edge (x, x + offsets[c]), +inf where there is no edge, so one
    # stable ascending sort puts the edges in processing order and the missing ones last.
    kdtype = np.float64 if affinities.dtype == np.float64 else np.float32
    keys = np.full((n_channels, *spatial), np.inf, dtype=kdtype)
    n_valid = 0
    for c, off in enumerate(offsets):
        here = tuple(slice(max(0, -d), max(0, n - d)) for d, n in zip(off, spatial))
        there = tuple(slice(max(0, d), max(0, n + d)) for d, n in zip(off, spatial))
        a = affinities[c][here].astype(kdtype, copy=False)
        key = -a if c < n_attractive else a - kdtype(1)
        keep = None
        if mask is not None:
            keep = mask[here] & mask[there]
        if grid is not None and c >= n_attractive:
            keep = grid[here] if keep is None else keep & grid[here]
        if keep is None:
            keys[c][here] = key
            n_valid += key.size
        else:
            keys[c][here] = np.where(keep, key, np.inf)
            n_valid += int(np.count_nonzero(keep))
    order = np.argsort(keys.ravel(), kind="stable")[:n_valid]
    del keys

    steps = np.array([int(np.prod(spatial[d + 1:])) for d in range(ndim)], dtype=np.int64)
    deltas = offsets @ steps
    parent = mws_kernel(
        order, n_voxels, np.zeros((0, 2), np.int64), np.zeros(0, bool),
        np.int64(max(n_voxels, 1)), deltas, np.int64(n_attractive), True,
    )
    inside = np.ones(n_voxels, dtype=bool) if mask is None else mask.ravel()
    labels, n_labels = label_roots(parent, inside)
    return labels.astype(smallest_uint(n_labels), copy=False).reshape(spatial)


def _check_n_nodes(n_nodes):
    if isinstance(n_nodes, (bool, np.bool_)) or not isinstance(n_nodes, (int, np.integer)) or n_nodes < 0:
        raise ValueError(f"n_nodes must be a non-negative integer; got {n_nodes!r}")
    if n_nodes >= 2**31:
        raise ValueError(f"n_nodes must be below 2**31; got {n_nodes}")
    return int(n_nodes)


def _check_n_attractive(n_attractive, offsets):
    if n_attractive is None:
        n_attractive = 0
        for off in offsets:
            if np.abs(off).max() != 1:
                break
            n_attractive += 1
        if n_attractive == 0:
            raise ValueError(
                f"offsets[0] = {offsets[0].tolist()} is not a direct neighbour, so no channel is "
                "attractive; put the nearest-neighbour offsets first or pass n_attractive"
            )
        return n_attractive
    if (isinstance(n_attractive, (bool, np.bool_)) or not isinstance(n_attractive, (int, np.integer))
            or not 0 <= n_attractive <= len(offsets)):
        raise ValueError(f"n_attractive must be an integer in 0 .. {len(offsets)}; got {n_attractive!r}")
    return int(n_attractive)


def _check_strides(strides, ndim):
    strides = tuple(strides)
    if len(strides) != ndim or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 1 for s in strides
    ):
        raise ValueError(f"strides must be {ndim} positive integers, one per spatial axis; got {strides}")
    return tuple(int(s) for s in strides)
