"""mvtec-ref: referring industrial anomaly segmentation benchmarks from anomaly-detection data.

The public Python API is what ``__all__`` names (``mvtec_ref.api``, ``mvtec_ref.torch_dataset``);
every other module serves the ``mvtec-ref`` command and may change. Names load on first use, so
``import mvtec_ref`` imports neither torch nor OpenCV.
"""

__version__ = "0.1.0"

__all__ = ["RefDataset", "Record", "Sentence", "Split", "TorchDataset", "__version__", "load"]

_WHERE = {"TorchDataset": "mvtec_ref.torch_dataset"}


def __getattr__(name: str):
    if name in __all__ and name != "__version__":
        import importlib

        return getattr(importlib.import_module(_WHERE.get(name, "mvtec_ref.api")), name)
    raise AttributeError(f"module 'mvtec_ref' has no attribute {name!r}")
