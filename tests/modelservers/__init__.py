"""Tests against real KServe V2 model servers (Triton, MLServer) run by :mod:`muse.testing`."""
