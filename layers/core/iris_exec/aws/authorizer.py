"""The API Gateway Lambda authorizer (TOKEN type, identity source: the Authorization header).

It never denies: a valid key is metered on its own usage-plan key (per customer); a valid
execution token (a sandbox's tool calls) on the key of the caller who started the
execution, or on the tools usage plan when it names none; anything else on the shared
anonymous one, with tight throttling (and what cannot even be a key or a token is refused
by API Gateway before this function runs: the authorizer's ValidationExpression). The
functions authenticate again and answer the contract's exact 401 (and 503 when the key
store is down), so a revoked key stops working at once even while API Gateway caches this
authorizer's answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from iris_exec.aws.runtime import container, logger
from iris_exec.domain.errors import StoreUnavailable, Unauthorized
from iris_exec.services.auth import bearer_credential
from iris_exec.services.tokens import TOKEN_PREFIX


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
    credential = bearer_credential(token) or ""
    if credential.startswith(TOKEN_PREFIX):
        try:
            grant = built.tokens.signed_grant(credential)
            principal_id = grant.project_id
            usage_key = built.tokens.metering_key(credential) or built.settings.tools_usage_key
            claims = {"authenticated": "token", "projectId": grant.project_id}
        except Unauthorized:
            pass
        except StoreUnavailable:
            # The signing key could not be read: metered as junk; the tool server answers.
            logger.error("signing key unavailable in the authorizer")
        return _answer(event, principal_id, usage_key, claims)
    try:
        principal = built.auth.authenticate(token)  # one read of the key's record
        principal_id = principal.project_id
        usage_key = principal.usage_key or anonymous
        claims = {
            "authenticated": "true",
            "projectId": principal.project_id,
            "keyId": principal.key_id,
        }
    except Unauthorized:
        pass
    except StoreUnavailable:
        logger.error("key store unavailable in the authorizer; the function will answer 503")
    return _answer(event, principal_id, usage_key, claims)


def _answer(
    event: dict[str, Any], principal_id: str, usage_key: str, claims: dict[str, str]
) -> dict[str, Any]:
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
