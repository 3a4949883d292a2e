"""The mutex watershed's solver: union-find with mutex constraints, compiled with numba.

Edges arrive in processing order (by decreasing weight), either as node pairs (graph mode) or
as flat indices into a ``(C, *spatial)`` affinity grid (grid mode, edges decoded on the fly);
:mod:`emseg.instances.mws` checks the inputs and sorts the edges. Clusters are kept in a union-find
forest (path halving, union by rank); each cluster has a list of its mutex partners and a hash
table holds the constrained cluster pairs.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["mws_kernel", "label_roots"]


@numba.njit(cache=True, nogil=True)
def _find(parent, x):
    while parent[x] != x:  # path halving
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True, nogil=True)
def _append(head, tail, count, val, nxt, i, r, node):
    """Append ``node`` as entry ``i`` to the partner list of representative ``r``."""
    val[i] = node
    nxt[i] = -1
    if head[r] == -1:
        head[r] = i
    else:
        nxt[tail[r]] = i
    tail[r] = i
    count[r] += 1


@numba.njit(cache=True, nogil=True)
def _slot(table, key):
    """The slot of ``key`` in the open-addressing table (-1 = empty), or the empty slot for it.

    A hand-written table instead of numba's ``set``, which can hang after some sequences of
    add and discard (numba issues 6543, 8627); keys are never removed here.
    """
    mask = len(table) - 1
    i = np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask
    while table[i] != -1 and table[i] != key:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True, nogil=True)
def _grown(table):
    """The table rehashed into twice the size."""
    new = np.full(2 * len(table), -1, np.int64)
    for key in table:
        if key != -1:
            new[_slot(new, key)] = key
    return new


@numba.njit(cache=True, nogil=True)
def mws_kernel(order, n_nodes, edges, is_mutex, n_flat, deltas, n_attractive, on_grid):
    """Run the mutex watershed over the edges in ``order``; return the union-find parents.

    Graph mode: edge ``e`` is ``edges[e]``, repulsive where ``is_mutex[e]``. Grid mode: edge
    ``e`` is channel ``c = e // n_flat`` at node ``x = e % n_flat`` with partner
    ``x + deltas[c]``, repulsive where ``c >= n_attractive``.
    """
    parent = np.arange(n_nodes)
    rank = np.zeros(n_nodes, np.int8)
    # Each cluster is represented in the mutex bookkeeping by one of its node ids, rep[root]; the
    # hash table holds the constrained pairs of representatives (as lo * n_nodes + hi) and the
    # linked list head[r] .. tail[r] holds, for representative r, a node of each partner cluster.
    rep = np.arange(n_nodes)
    head = np.full(n_nodes, -1, np.int64)
    tail = np.full(n_nodes, -1, np.int64)
    count = np.zeros(n_nodes, np.int64)
    cap = 1024
    val = np.empty(cap, np.int64)
    nxt = np.empty(cap, np.int64)
    n_entries = 0
    table = np.full(1024, -1, np.int64)
    n_keys = 0
    for e in order:
        if on_grid:
            c = e // n_flat
            u = e - c * n_flat
            v = u + deltas[c]
            mutex = c >= n_attractive
        else:
            u = edges[e, 0]
            v = edges[e, 1]
            mutex = is_mutex[e]
        ru = _find(parent, u)
        rv = _find(parent, v)
        if ru == rv:
            continue
        a = rep[ru]
        b = rep[rv]
        key = min(a, b) * n_nodes + max(a, b)
        slot = _slot(table, key)
        if table[slot] == key:
            continue
        if mutex:
            table[slot] = key
            n_keys += 1
            if 2 * n_keys > len(table):
                table = _grown(table)
            if n_entries + 2 > cap:
                cap *= 2
                val2 = np.empty(cap, np.int64)
                nxt2 = np.empty(cap, np.int64)
                val2[:n_entries] = val[:n_entries]
                nxt2[:n_entries] = nxt[:n_entries]
                val = val2
                nxt = nxt2
            _append(head, tail, count, val, nxt, n_entries, a, v)
            _append(head, tail, count, val, nxt, n_entries + 1, b, u)
            n_entries += 2
            continue
        # Merge: keep the representative with the longer partner list, give it the other's
        # constraints (the old keys stay in the table, unused: b is never a representative again).
        if count[a] < count[b]:
            a, b = b, a
        i = head[b]
        while i != -1:
            q = rep[_find(parent, val[i])]
            key = min(a, q) * n_nodes + max(a, q)
            slot = _slot(table, key)
            if table[slot] != key:
                table[slot] = key
                n_keys += 1
                if 2 * n_keys > len(table):
                    table = _grown(table)
            i = nxt[i]
        if head[b] != -1:
            if head[a] == -1:
                head[a] = head[b]
            else:
                nxt[tail[a]] = head[b]
            tail[a] = tail[b]
            count[a] += count[b]
        if rank[ru] < rank[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        if rank[ru] == rank[rv]:
            rank[ru] += 1
        rep[ru] = a
    return parent


@numba.njit(cache=True, nogil=True)
def label_roots(parent, inside):
    """Ids 1 .. k per union-find cluster in order of first appearance, 0 where not ``inside``."""
    n = len(parent)
    ids = np.zeros(n, np.int64)
    labels = np.zeros(n, np.uint64)
    k = 0
    for x in range(n):
        if not inside[x]:
            continue
        r = _find(parent, x)
        if ids[r] == 0:
            k += 1
            ids[r] = k
        labels[x] = ids[r]
    return labels, k
