"""mvtec-ref: referring industrial anomaly segmentation benchmarks from anomaly-detection data."""

__version__ = "0.1.0"
