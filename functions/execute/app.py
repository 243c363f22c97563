"""POST /api/iris/execute."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("execute")
