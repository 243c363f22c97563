"""GET / and GET /console/{name}: the web console's page and files (no key needed to load)."""

from iris_exec.aws.lambda_app import route_handler

handler = route_handler("console")
