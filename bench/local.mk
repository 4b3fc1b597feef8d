EXTRA_DIST += bench/sdpa_cpu_bwd.py
