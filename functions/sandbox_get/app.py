"""GET /api/iris/sandbox."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("sandbox_get")
