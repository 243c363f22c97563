"""A stand-in for AWS Secrets Manager's GetSecretValue (its JSON 1.1 protocol), so that a
function in a process of its own reads its secrets as on Lambda:
``AWS_ENDPOINT_URL_SECRETS_MANAGER`` points the AWS SDKs (and the service's own client) here.

It refuses what Secrets Manager refuses: an unsigned request
(MissingAuthenticationTokenException), one whose Signature Version 4 signature, recomputed
with botocore's signer for the ``secretsmanager`` service and this region, does not match
(InvalidSignatureException), and a target other than ``secretsmanager.GetSecretValue``
(UnknownOperationException). Errors are answered as the JSON protocol answers them: the code
only in the body's ``__type`` (botocore reads it from there and nowhere else), the text in
``Message``."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.http_standin import HttpStandIn

REGION = "us-east-1"
#: The credentials the stand-in accepts (the pair the tests' AWS clients use).
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "x"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+),\s*"
    r"SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def signature_error(url: str, headers: Message, body: bytes) -> tuple[int, str] | None:
    """What Secrets Manager says of the request's signature: None when it is good."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    found = AUTHORIZATION.match(headers.get("Authorization", ""))
    if found is None or "X-Amz-Date" not in headers:
        return 400, "com.amazon.coral.service#MissingAuthenticationTokenException"
    if found["key"] != ACCESS_KEY:
        return 400, "com.amazon.coral.service#UnrecognizedClientException"
    signed = found["signed"].split(";")
    request = AWSRequest(
        method="POST", url=url, data=body, headers={name: headers[name] or "" for name in signed}
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    token = headers.get("X-Amz-Security-Token")
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "secretsmanager", REGION)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    scope = f"{headers['X-Amz-Date'][:8]}/{REGION}/secretsmanager/aws4_request"
    if found["scope"] != scope or found["signature"] != expected:
        return 400, "com.amazon.coral.service#InvalidSignatureException"
    return None


class SecretsStandIn(HttpStandIn):
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = dict(secrets)
        #: AWSPREVIOUS: the value before the last ``rotate``.
        self.previous: dict[str, str] = {}
        self.reads: list[str] = []
        #: Version stage -> how many of its reads get Secrets Manager's InternalServiceError
        #: (a server fault, which the SDKs retry).
        self.failing: Counter[str] = Counter()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                refused = signature_error(standin.endpoint_url + self.path, self.headers, body)
                if refused is not None:
                    status, code = refused
                    self._answer(status, {"__type": code, "Message": f"refused: {code}"})
                    return
                request = json.loads(body or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                if target != "secretsmanager.GetSecretValue":
                    self._answer(
                        400,
                        {
                            "__type": "com.amazon.coral.service#UnknownOperationException",
                            "Message": f"not supported: {target}",
                        },
                    )
                    return
                name = str(request.get("SecretId", ""))
                stage = str(request.get("VersionStage") or "AWSCURRENT")
                standin.reads.append(name)
                if standin.failing[stage] > 0:
                    standin.failing[stage] -= 1
                    error = {"__type": "InternalServiceError", "Message": "An error occurred"}
                    self._answer(500, error)
                    return
                values = standin.previous if stage == "AWSPREVIOUS" else standin.secrets
                if stage not in ("AWSCURRENT", "AWSPREVIOUS") or name not in values:
                    message = (
                        "Secrets Manager can't find the specified secret."
                        if name not in standin.secrets
                        else "Secrets Manager can't find the specified secret value for"
                        f" staging label: {stage}"
                    )
                    self._answer(400, {"__type": "ResourceNotFoundException", "Message": message})
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
