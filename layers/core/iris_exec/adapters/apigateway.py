"""API Gateway usage-plan keys: one per customer API key, so usage plans meter customers.

The authorizer answers with this key's value as `usageIdentifierKey`; it is not a secret
(customers never send it), it only names the customer to API Gateway's metering."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient


class UsagePlanKeys:
    def __init__(self, client: APIGatewayClient, usage_plan_id: str) -> None:
        self._client = client
        self._plan = usage_plan_id

    def issue(self, key_id: str, project_id: str) -> str:
        """Create an API Gateway key for one of our keys and add it to the usage plan."""
        value = "iris-usage-" + secrets.token_urlsafe(24)
        created = self._client.create_api_key(
            name=f"iris-{key_id}",
            description=f"usage metering of IRIS key {key_id} (project {project_id})",
            enabled=True,
            value=value,
            tags={"iris:keyId": key_id, "iris:projectId": project_id},
        )
        try:
            self._client.create_usage_plan_key(
                usagePlanId=self._plan, keyId=created["id"], keyType="API_KEY"
            )
        except Exception:
            self._client.delete_api_key(apiKey=created["id"])  # nothing half-made stays
            raise
        return value

    def retire(self, key_id: str) -> bool:
        """Delete the API Gateway key issued for one of our keys (after a revoke)."""
        found = self._client.get_api_keys(nameQuery=f"iris-{key_id}", includeValues=False)
        items = [k for k in found.get("items", []) if k.get("name") == f"iris-{key_id}"]
        for item in items:
            self._client.delete_api_key(apiKey=item["id"])
        return bool(items)
