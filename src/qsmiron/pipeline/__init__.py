"""Per-subject and cohort orchestration: caching, resume, local and Dask execution."""
