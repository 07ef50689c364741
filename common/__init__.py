"""Shared harness of the unlearning pipeline: config, seed, data, models, metrics, io, log, train."""
