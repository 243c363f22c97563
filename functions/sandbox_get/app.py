"""GET /api/iris/sandbox (one sandbox) and GET /api/iris/sandboxes (the project's list)."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("sandbox_get", "sandboxes_list")
