"""Federated analysis: the maths as plain functions, no HTTP (the node and the hub call
them). Each is tested against the pooled analysis (statsmodels, numpy on the pooled rows)."""
