"""Public EM datasets with ground truth: a registry of what they are, and a fetcher.

``registry`` reads the shipped ``registry.json`` (per dataset: files with URL, size and checksum
where published, which files or keys are raw and labels, voxel size, modality, organism, labels,
licence, citation, homepage, and where those facts came from); ``download`` fetches one file over
HTTP with resume and checks its checksum; ``fetch`` downloads a dataset, unpacks it and converts
its volumes to OME-Zarr with the voxel size (``emseg datasets list|info|fetch``).

Examples
--------
>>> len(dataset_names()) >= 15
True
>>> dataset_info("cremi-a")["voxel_size"]
[40, 4, 4]
"""

from .download import ChecksumError, DownloadInterrupted, download_file
from .fetch import FetchResult, fetch_dataset
from .registry import UnknownDatasetError, dataset_info, dataset_names, load_registry, total_size

__all__ = ["load_registry", "dataset_names", "dataset_info", "total_size", "fetch_dataset", "FetchResult",
           "download_file", "ChecksumError", "DownloadInterrupted", "UnknownDatasetError"]
