"""Datasets as LightningDataModules, one file per dataset family.

Dataset configs (configs/dataset/*.yaml) instantiate them with ``_target_``.
"""
