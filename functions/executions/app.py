"""GET /api/iris/executions/{executionId}: an asynchronous execution's status and logs."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("executions")
