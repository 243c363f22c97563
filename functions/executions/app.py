"""GET /api/iris/executions/{executionId} (one execution) and GET /api/iris/executions (the
project's history)."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("executions", "executions_list")
