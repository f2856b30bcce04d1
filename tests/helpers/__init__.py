"""Helpers shared by the test packages: small models and artifact probes."""
