"""Per-object measurements of a label volume: sizes, surfaces, positions, shapes and intensities in nm.

:func:`region_table` measures in memory or block by block (objects across blocks combined exactly).
"""

from .partial import block_partial, merge_partials
from .surface import cube_areas
from .table import COLUMNS, INTENSITY, region_table

__all__ = ["region_table", "COLUMNS", "INTENSITY", "block_partial", "merge_partials", "cube_areas"]
