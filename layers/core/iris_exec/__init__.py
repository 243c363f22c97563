"""IRIS code execution service: the core package, shared by the local server, the CLI
and the Lambda functions."""

__version__ = "0.1.0"
