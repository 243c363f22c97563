"""The API Gateway Lambda authorizer (TOKEN type, identity source: the Authorization header).

It never denies: a valid key is metered on its own usage-plan key (per customer), anything
else on the shared anonymous one, with tight throttling. The functions authenticate again
and answer the contract's exact 401 (and 503 when the key store is down), so a revoked key
stops working at once even while API Gateway caches this authorizer's answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from iris_exec.aws.runtime import container, logger
from iris_exec.domain.errors import StoreUnavailable, Unauthorized
from iris_exec.services.auth import hash_key


def _resource(method_arn: str) -> str:
    """Allow every route of the stage: results are cached per token, not per route."""
    api, stage = method_arn.split("/")[:2]
    return f"{api}/{stage}/*/*"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    built = container()
    token = str(event.get("authorizationToken") or "")
    anonymous = built.settings.anonymous_usage_key
    principal_id, usage_key = "anonymous", anonymous
    claims: dict[str, str] = {"authenticated": "false"}
    try:
        principal = built.auth.authenticate(token)
        scheme_token = token.strip().partition(" ")[2].strip()
        record = built.keys.find_by_hash(hash_key(scheme_token))
        principal_id = principal.project_id
        usage_key = (record.usage_key if record else None) or anonymous
        claims = {
            "authenticated": "true",
            "projectId": principal.project_id,
            "keyId": principal.key_id,
        }
    except Unauthorized:
        pass
    except StoreUnavailable:
        logger.error("key store unavailable in the authorizer; the function will answer 503")
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": _resource(str(event["methodArn"])),
                }
            ],
        },
        "context": claims,
        "usageIdentifierKey": usage_key,
    }
