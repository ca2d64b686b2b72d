"""Baseline models trained and evaluated on mvtec-ref datasets (DQFormer lands here)."""
