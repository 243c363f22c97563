"""A stand-in for AWS Secrets Manager's GetSecretValue (its JSON 1.1 protocol), so that a
function in a process of its own reads its secrets through Powertools and boto3 exactly as
on Lambda: ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` points boto3 here."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_standin import HttpStandIn

REGION = "us-east-1"


class SecretsStandIn(HttpStandIn):
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        #: AWSPREVIOUS: the value before the last ``rotate``.
        self.previous: dict[str, str] = {}
        self.reads: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any], error: str = "") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                if target != "secretsmanager.GetSecretValue":
                    self._answer(400, {"message": f"not supported: {target}"}, "InvalidAction")
                    return
                name = str(request.get("SecretId", ""))
                stage = str(request.get("VersionStage") or "AWSCURRENT")
                standin.reads.append(name)
                values = standin.previous if stage == "AWSPREVIOUS" else standin.secrets
                if stage not in ("AWSCURRENT", "AWSPREVIOUS") or name not in values:
                    message = (
                        "Secrets Manager can't find the specified secret."
                        if name not in standin.secrets
                        else "Secrets Manager can't find the specified secret value for"
                        f" staging label: {stage}"
                    )
                    self._answer(400, {"message": message}, "ResourceNotFoundException")
                    return
                self._answer(
                    200,
                    {
                        "ARN": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{name}",
                        "Name": name,
                        "SecretString": values[name],
                        "VersionId": str(uuid.uuid4()),
                        "VersionStages": [stage],
                        "CreatedDate": time.time(),
                    },
                )

        self._serve(Handler)

    def rotate(self, name: str, value: str) -> None:
        """``put-secret-value``: the new value is AWSCURRENT, the old one AWSPREVIOUS."""
        self.previous[name] = self.secrets[name]
        self.secrets[name] = value

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint_url}
