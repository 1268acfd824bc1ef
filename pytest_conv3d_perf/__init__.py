"""pytest-conv3d-perf: correctness and noise-aware performance gating of a conv3d kernel."""

__version__ = "0.1.0"
