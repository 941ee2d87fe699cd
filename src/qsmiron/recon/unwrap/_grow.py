"""Numba kernels of the quality-guided region-growing unwrapper (ROMEO-like).

The volume is flattened in C order; the edge between voxel ``v`` and its neighbour
``v + stride[d]`` along axis ``d`` has id ``3 * v + d`` and its cost lives at that index of a
flat uint8 array: 0 means no edge (an end outside the mask or beyond the volume), 1 is the
most reliable edge and 255 the least. Unwrapping visits edges cheapest first with a bucket
priority queue (one LIFO list per cost, linked through one int32 array), so the whole
growth is O(number of voxels).
"""

from __future__ import annotations

import math

import numba
import numpy as np

N_BUCKETS = 256
"""Edge costs are 1..255 (0 = no edge)."""

_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, inline="always")
def _wrap(x):
    return x - _TWO_PI * math.floor((x + math.pi) / _TWO_PI)


@numba.njit(cache=True)
def edge_costs(phase, phase2, ratio, magnitude, mask, magnitude_ref):
    """Cost (uint8, 1 best .. 255 worst, 0 no edge) of every edge, ROMEO's quality terms.

    Quality of the edge (i, j) is the product of

    - phase coherence ``1 - |wrap(p_j - p_i)| / pi``;
    - phase gradient coherence across echoes ``max(0, 1 - |wrap(dp) - wrap(dp2) * ratio|)``
      (skipped when ``phase2`` has size 0), ``ratio = TE(phase) / TE(phase2)``;
    - magnitude coherence ``(min(m_i, m_j) / max(m_i, m_j))**2`` and a magnitude weight
      ``min(1, min(m_i, m_j) / magnitude_ref)`` (skipped when ``magnitude`` has size 0).

    Cost is ``1 + round(254 * (1 - quality))``.
    """
    nx, ny, nz = phase.shape
    costs = np.zeros((nx, ny, nz, 3), np.uint8)
    use_p2 = phase2.size > 0
    use_mag = magnitude.size > 0
    inv_pi = 1.0 / math.pi
    inv_ref = 1.0 / magnitude_ref if magnitude_ref > 0 else 0.0
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                if not mask[x, y, z]:
                    continue
                p = phase[x, y, z]
                for d in range(3):
                    x2 = x + (d == 0)
                    y2 = y + (d == 1)
                    z2 = z + (d == 2)
                    if x2 >= nx or y2 >= ny or z2 >= nz or not mask[x2, y2, z2]:
                        continue
                    dp = _wrap(phase[x2, y2, z2] - p)
                    q = 1.0 - abs(dp) * inv_pi
                    if use_p2:
                        dp2 = _wrap(phase2[x2, y2, z2] - phase2[x, y, z])
                        g = 1.0 - abs(dp - dp2 * ratio)
                        q *= g if g > 0.0 else 0.0
                    if use_mag:
                        m1 = magnitude[x, y, z]
                        m2 = magnitude[x2, y2, z2]
                        small = m1 if m1 < m2 else m2
                        big = m2 if m1 < m2 else m1
                        if big > 0.0:
                            r = small / big
                            q *= r * r
                        else:
                            q = 0.0
                        w = small * inv_ref
                        q *= w if w < 1.0 else 1.0
                    if q < 0.0:
                        q = 0.0
                    costs[x, y, z, d] = 1 + int(254.0 * (1.0 - q) + 0.5)
    return costs


@numba.njit(cache=True)
def voxel_quality(costs, mask):
    """Mean quality (0..1) of the edges that touch each voxel; 0 where it has none."""
    nx, ny, nz, _ = costs.shape
    out = np.zeros((nx, ny, nz), np.float32)
    count = np.zeros((nx, ny, nz), np.uint8)
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                for d in range(3):
                    c = costs[x, y, z, d]
                    if c == 0:
                        continue
                    q = 1.0 - (c - 1) / 254.0
                    x2 = x + (d == 0)
                    y2 = y + (d == 1)
                    z2 = z + (d == 2)
                    out[x, y, z] += q
                    out[x2, y2, z2] += q
                    count[x, y, z] += 1
                    count[x2, y2, z2] += 1
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                if count[x, y, z] > 0 and mask[x, y, z]:
                    out[x, y, z] /= count[x, y, z]
                else:
                    out[x, y, z] = 0.0
    return out


@numba.njit(cache=True)
def seed_order(quality, mask):
    """Mask voxels (flat indices) from best to worst quality (counting sort, 1024 bins)."""
    flat_q = quality.reshape(-1)
    flat_m = mask.reshape(-1)
    n_bins = 1024
    counts = np.zeros(n_bins + 1, np.int64)
    n = 0
    for v in range(flat_q.size):
        if flat_m[v]:
            b = n_bins - 1 - min(n_bins - 1, int(flat_q[v] * (n_bins - 1) + 0.5))
            counts[b + 1] += 1
            n += 1
    for b in range(n_bins):
        counts[b + 1] += counts[b]
    order = np.empty(n, np.int64)
    for v in range(flat_q.size):
        if flat_m[v]:
            b = n_bins - 1 - min(n_bins - 1, int(flat_q[v] * (n_bins - 1) + 0.5))
            order[counts[b]] = v
            counts[b] += 1
    return order


@numba.njit(cache=True, inline="always")
def _push_edges(v, costs, state, strides, start, top, stack, current):
    for d in range(3):
        e = 3 * v + d
        c = costs[e]
        if c > 0 and state[v + strides[d]] == 0:
            stack[start[c] + top[c]] = e
            top[c] += 1
            if c < current:
                current = c
        u = v - strides[d]
        if u >= 0:
            e = 3 * u + d
            c = costs[e]
            if c > 0 and state[u] == 0:
                stack[start[c] + top[c]] = e
                top[c] += 1
                if c < current:
                    current = c
    return current


@numba.njit(cache=True)
def grow(phase, costs, mask, order):
    """Unwrap ``phase`` in place by region growing; return the component label of each voxel.

    Parameters
    ----------
    phase : float32 array (X, Y, Z), C-contiguous
        Wrapped phase, rad; overwritten with the unwrapped phase inside the mask.
    costs : uint8 array (X, Y, Z, 3)
        From ``edge_costs``.
    mask : bool array (X, Y, Z)
    order : int64 array
        Seeds to try, best first (``seed_order``); each new connected component of the edge
        graph starts at its best voxel.

    Returns
    -------
    labels : int32 array (X, Y, Z)
        1, 2, ... the component each mask voxel was reached in (0 outside the mask).

    Notes
    -----
    Each bucket is a LIFO stack in one shared array, sized by the number of edges of that
    cost (an edge is pushed at most once: when its first end is reached, its other end is
    still unvisited, and never again once both ends are visited), so pushes and pops touch
    only the top of 255 stacks (cache friendly) instead of a linked list spread over the
    volume.
    """
    nx, ny, nz = phase.shape
    n_vox = nx * ny * nz
    strides = np.array([ny * nz, nz, 1], np.int64)
    flat = phase.reshape(-1)
    flat_costs = costs.reshape(-1)
    counts = np.zeros(N_BUCKETS, np.int64)
    for e in range(flat_costs.size):
        counts[flat_costs[e]] += 1
    counts[0] = 0
    start = np.zeros(N_BUCKETS, np.int64)
    for c in range(1, N_BUCKETS):
        start[c] = start[c - 1] + counts[c - 1]
    stack = np.empty(max(1, start[N_BUCKETS - 1] + counts[N_BUCKETS - 1]), np.int64)
    top = np.zeros(N_BUCKETS, np.int64)
    state = np.zeros(n_vox, np.uint8)  # 0 unvisited, 1 visited, 2 outside the mask
    labels = np.zeros(n_vox, np.int32)
    flat_mask = mask.reshape(-1)
    for v in range(n_vox):
        if not flat_mask[v]:
            state[v] = 2
    component = 0
    for seed in order:
        if state[seed] != 0:
            continue
        component += 1
        state[seed] = 1
        labels[seed] = component
        current = _push_edges(seed, flat_costs, state, strides, start, top, stack, N_BUCKETS)
        while True:
            while current < N_BUCKETS and top[current] == 0:
                current += 1
            if current >= N_BUCKETS:
                break
            top[current] -= 1
            e = stack[start[current] + top[current]]
            i = e // 3
            j = i + strides[e - 3 * i]
            if state[i] == 1 and state[j] == 0:
                src = i
                dst = j
            elif state[j] == 1 and state[i] == 0:
                src = j
                dst = i
            else:
                continue
            value = flat[dst]
            flat[dst] = value - _TWO_PI * math.floor((value - flat[src]) / _TWO_PI + 0.5)
            state[dst] = 1
            labels[dst] = component
            current = _push_edges(dst, flat_costs, state, strides, start, top, stack, current)
    return labels.reshape(nx, ny, nz)
