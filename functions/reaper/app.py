"""Every minute: close idle and expired sandboxes, reconcile the registry with E2B."""

from iris_exec.aws.lambda_app import reaper_handler

handler = reaper_handler()
