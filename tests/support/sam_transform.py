"""The CloudFormation that AWS receives: template.yaml through the SAM translator of the
pinned SAM CLI (.tools/sam, `make sam-tools`), offline.

Offline means three stand-ins, all on the translator's inputs, none on its logic: the
CodeUri/ContentUri folders become the s3:// URIs `sam deploy` uploads them as, the
managed-policy loader knows the few AWS managed policies the template names (the
translator only asks it for names it cannot resolve), and the Region is us-east-1."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from typing import Any

from tests.support.server import ROOT

SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"

_SCRIPT = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class Policies:
    def load(self):
        return {}

with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
for name, resource in template["Resources"].items():
    props = resource.get("Properties", {})
    for field in ("CodeUri", "ContentUri"):
        if isinstance(props.get(field), str):
            props[field] = "s3://iris-artifacts/" + name + ".zip"
out = transform(template, {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
                           "AWS::Partition": "aws"},
                Policies())
json.dump(out, sys.stdout)
"""


@cache
def transformed() -> dict[str, Any]:
    """template.yaml as CloudFormation (the SAM transform applied)."""
    assert SAM_PYTHON.exists(), "the SAM CLI is not installed: run `make sam-tools`"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", _SCRIPT, str(ROOT / "template.yaml")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result
