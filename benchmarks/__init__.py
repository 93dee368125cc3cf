"""kfp-edge benchmarks: side-by-side measurements, run with ``make bench``."""
