"""The measurement report: an HTML page with the summary of a region table, its histograms, and the
largest and smallest objects shown on a section through them (matplotlib, ``emseg[report]``)."""

from __future__ import annotations

import html
import os

import numpy as np

__all__ = ["summary", "check_report", "write_report"]

HISTOGRAMS = (("volume_nm3", "volume (µm³)", 1e-9, True), ("surface_nm2", "surface (µm²)", 1e-6, True),
              ("sphericity", "sphericity", 1.0, False), ("elongation", "elongation (major / middle axis)", 1.0, False),
              ("flatness", "flatness (middle / minor axis)", 1.0, False),
              ("axis_major_nm", "major axis (nm)", 1.0, True))
"""(column, axis label, scale, log x) of each histogram."""
NAMES = {"objects": "objects", "volume_um3": "volume measured (µm³)", "total_object_volume_um3": "volume of the objects "
         "(µm³)", "volume_fraction": "fraction of the volume in objects", "objects_per_um3": "objects per µm³",
         "median_volume_um3": "median object volume (µm³)", "mean_volume_um3": "mean object volume (µm³)",
         "median_surface_um2": "median surface (µm²)", "median_sphericity": "median sphericity",
         "touching_border": "objects touching the border"}


def summary(columns, shape, voxel_size) -> dict:
    """Counts, totals and densities of a region table over a volume of ``shape`` voxels of ``voxel_size`` nm.

    Examples
    --------
    >>> t = {"volume_nm3": np.array([1e8, 3e8]), "surface_nm2": np.array([6e6, 1e7]),
    ...      "sphericity": np.array([0.9, 0.7]), "touches_border": np.array([False, True])}
    >>> s = summary(t, (100, 100, 100), (10.0, 10.0, 10.0))
    >>> s["objects"], s["volume_um3"], s["total_object_volume_um3"], s["objects_per_um3"], s["touching_border"]
    (2, 1.0, 0.4, 2.0, 1)
    """
    volume_um3 = float(np.prod(shape) * np.prod(voxel_size) / 1e9)
    vol = np.asarray(columns["volume_nm3"], float) / 1e9
    n = len(vol)
    med = (lambda a: float(np.median(a)) if n else float("nan"))
    return {"objects": n, "volume_um3": volume_um3, "total_object_volume_um3": float(vol.sum()),
            "volume_fraction": float(vol.sum() / volume_um3) if volume_um3 else float("nan"),
            "objects_per_um3": n / volume_um3 if volume_um3 else float("nan"),
            "median_volume_um3": med(vol), "mean_volume_um3": float(vol.mean()) if n else float("nan"),
            "median_surface_um2": med(np.asarray(columns["surface_nm2"], float) / 1e6),
            "median_sphericity": med(np.asarray(columns["sphericity"], float)),
            "touching_border": int(np.count_nonzero(columns["touches_border"]))}


def check_report():
    """Refuse ``--report`` at once when matplotlib is missing (before anything is measured)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--report needs matplotlib (pip install 'emseg[report]')") from None


def write_report(columns, folder, labels, raw=None, voxel_size=(1.0, 1.0, 1.0), n_show=4, title="objects"):
    """Write ``folder/index.html`` (+ PNGs): summary, histograms, the ``n_show`` largest and smallest objects.

    ``labels`` and ``raw`` are (z, y, x) array-likes (lazy volumes are read only around the shown objects).
    Returns the path of the page.
    """
    check_report()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - the histograms' log axes

    os.makedirs(folder, exist_ok=True)
    shape = tuple(int(s) for s in labels.shape)
    s = summary(columns, shape, voxel_size)
    rows = "".join(f"<tr><td>{html.escape(NAMES[k])}</td><td>{_fmt(v)}</td></tr>" for k, v in s.items())
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto} td{padding:2px 12px} "
             "img{max-width:100%}</style>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{shape[0]}×{shape[1]}×{shape[2]} voxels of {'×'.join(f'{v:g}' for v in voxel_size)} nm. "
             "Objects that touch the border are cut by it: their sizes are lower bounds.</p>",
             f"<table>{rows}</table>"]
    if s["objects"]:
        fig, axes = plt.subplots(2, 3, figsize=(13, 7))
        for ax, (col, label, scale, logx) in zip(axes.ravel(), HISTOGRAMS):
            v = np.asarray(columns[col], float) * scale
            v = v[np.isfinite(v) & ((v > 0) if logx else True)]
            k = int(np.clip(len(v) // 3, 5, 40))
            bins = np.geomspace(v.min(), v.max(), k + 1) if logx and len(v) and v.min() < v.max() else k
            ax.hist(v, bins=bins, color="#4477aa")
            ax.yaxis.get_major_locator().set_params(integer=True)
            if logx:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel("objects")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "histograms.png"), dpi=90)
        plt.close(fig)
        parts.append("<h2>Distributions</h2><img src='histograms.png' alt='histograms'>")
        order = np.argsort(np.asarray(columns["voxels"]), kind="stable")
        for name, rows_ in (("largest", order[::-1][:n_show]), ("smallest", order[:n_show])):
            path = os.path.join(folder, f"{name}.png")
            _gallery(plt, columns, rows_, labels, raw, path, voxel_size)
            parts.append(f"<h2>The {len(rows_)} {name} objects</h2><p>The middle section of each object's box, "
                         f"its outline in red{' over the raw' if raw is not None else ''}.</p>"
                         f"<img src='{name}.png' alt='{name} objects'>")
    page = os.path.join(folder, "index.html")
    with open(page, "w") as f:
        f.write("\n".join(parts) + "\n")
    return page


def _gallery(plt, columns, rows, labels, raw, path, voxel_size):
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        z = (int(columns["bbox_z0"][r]) + int(columns["bbox_z1"][r]) - 1) // 2
        y0, y1, x0, x1 = (int(columns[k][r]) for k in ("bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1"))
        m = max(8, (y1 - y0) // 4, (x1 - x0) // 4)
        ys = slice(max(0, y0 - m), min(labels.shape[1], y1 + m))
        xs = slice(max(0, x0 - m), min(labels.shape[2], x1 + m))
        lab = np.asarray(labels[z, ys, xs]) == columns["id"][r]
        if not lab.any():  # the middle falls outside a curved object: take its largest section, read one at a time
            best = -1
            for k in range(int(columns["bbox_z0"][r]), int(columns["bbox_z1"][r])):
                section = np.asarray(labels[k, ys, xs]) == columns["id"][r]
                if section.sum() > best:
                    best, z, lab = int(section.sum()), k, section
        if raw is not None:
            image = np.asarray(raw[z, ys, xs], float)
        else:  # the other objects grey, this one white
            image = 0.4 * (np.asarray(labels[z, ys, xs]) > 0) + 0.6 * lab
        ax.imshow(image, cmap="gray", aspect=voxel_size[1] / voxel_size[2], vmin=None if raw is not None else 0,
                  vmax=None if raw is not None else 1)
        ax.contour(lab, levels=[0.5], colors="red", linewidths=1.2)
        cut = ", cut by the border" if columns["touches_border"][r] else ""
        ax.set_title(f"id {int(columns['id'][r])}: {columns['volume_nm3'][r] / 1e9:.3g} µm³{cut}\n"
                     f"z {z}, sphericity {columns['sphericity'][r]:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
