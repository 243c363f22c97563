"""GET /api/iris/audit."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("audit")
