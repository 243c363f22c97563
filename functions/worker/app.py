"""Runs one asynchronous execution (invoked by the execute function, InvocationType=Event)."""

from iris_exec.aws.lambda_app import worker_handler

handler = worker_handler()
