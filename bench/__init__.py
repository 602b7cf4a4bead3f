"""djctl's benchmarks: ``python -m bench.queue`` (djctl alone) and ``python -m bench.peers`` (side by side)."""
