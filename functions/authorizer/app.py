"""The API Gateway Lambda authorizer."""

from iris_exec.aws.authorizer import handler

__all__ = ["handler"]
