"""Synthetic MVTec-AD-layout trees: the embedded default that needs no download."""

from mvtec_ref.synth.tree import plan_jobs, write_synthetic_tree

__all__ = ["plan_jobs", "write_synthetic_tree"]
