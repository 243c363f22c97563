"""Adapters: the only modules that import vendor SDKs and drivers."""
