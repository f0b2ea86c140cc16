"""The reporting side: paper tables as data (tables), the one launcher (reproduce), aggregation
(results), figures (plots), patch storage (storage) and weight histograms (weight_histograms)."""
