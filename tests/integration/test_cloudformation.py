"""What AWS receives: the CloudFormation the SAM transform makes of template.yaml (the
translator of the pinned SAM CLI, tests/support/sam_transform.py), checked where a
template that lints clean still fails or misbehaves in a real account."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.sam_transform import transformed

STACK = "iris-exec-dev"

#: Properties that name a resource, by type. Those marked unique must be unique in the
#: account and Region (a second stack with the same value fails to deploy).
NAMES: dict[str, tuple[str, ...]] = {
    "AWS::Scheduler::Schedule": ("Name",),  # unique per schedule group
    "AWS::ApiGateway::ApiKey": ("Value",),  # "API Key already exists" (409)
    "AWS::SecretsManager::Secret": ("Name",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::Lambda::LayerVersion": ("LayerName",),
    "AWS::ApiGateway::UsagePlan": ("UsagePlanName",),
    "AWS::ApiGateway::RestApi": ("Name",),
}


def resources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = transformed()["Resources"]
    return found


def resolve(value: Any) -> Any:
    """A value with the stack's pseudo parameters and parameter defaults filled in."""
    parameters = {
        name: str(spec.get("Default", ""))
        for name, spec in transformed().get("Parameters", {}).items()
    }
    known = {"AWS::StackName": STACK, "AWS::Region": "us-east-1", **parameters}
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in known:
        return known[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(
            r"\$\{([\w:]+)\}", lambda m: known.get(m.group(1), m.group(0)), value["Fn::Sub"]
        )
    return value


def mentions_the_stack(value: Any) -> bool:
    """Whether a name is the stack's own: it holds the stack's name, or the generated name
    of one of the stack's resources."""
    scoped = {"AWS::StackName", *resources()}
    if isinstance(value, dict):
        if value.get("Ref") in scoped:
            return True
        return any(mentions_the_stack(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_the_stack(v) for v in value)
    return isinstance(value, str) and bool(
        {m.split(".")[0] for m in re.findall(r"\$\{([\w:.]+)\}", value)} & scoped
    )


def test_no_resource_has_a_fixed_physical_name() -> None:
    """Two stacks (dev and prod) in one account and Region: every name is the stack's."""
    fixed = []
    for logical, resource in resources().items():
        for field in NAMES.get(resource["Type"], ()):
            value = resource.get("Properties", {}).get(field)
            if value is not None and not mentions_the_stack(value):
                fixed.append(f"{logical}.{field} = {value}")
    assert not fixed, fixed


def test_the_functions_name_the_api_keys_the_stack_creates() -> None:
    """The authorizer answers with these values: each must be a key of this stack."""
    keys = {
        resolve(r["Properties"]["Value"])
        for r in resources().values()
        if r["Type"] == "AWS::ApiGateway::ApiKey"
    }
    for logical, resource in resources().items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resource["Properties"]["Environment"]["Variables"]
        for variable in ("IRIS_ANONYMOUS_USAGE_KEY", "IRIS_TOOLS_USAGE_KEY"):
            assert resolve(variables[variable]) in keys, (logical, variable)
        assert variables["IRIS_STACK_NAME"] == {"Ref": "AWS::StackName"}


def _metric_dimensions(alarm: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(namespace, dimension name, value) of every metric an alarm watches."""
    props = alarm["Properties"]
    found = [(props["Namespace"], d["Name"], d["Value"]) for d in props.get("Dimensions", [])]
    for query in props.get("Metrics", []):
        metric = query.get("MetricStat", {}).get("Metric")
        if metric:
            found += [(metric["Namespace"], d["Name"], d["Value"]) for d in metric["Dimensions"]]
    return found


def test_every_alarm_watches_a_metric_that_exists() -> None:
    """A dimension value that names nothing leaves the alarm OK forever."""
    all_resources = resources()
    (api,) = [r for r in all_resources.values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    api_name = resolve(api["Properties"].get("Name") or api["Properties"]["Body"]["info"]["title"])
    functions = {k for k, r in all_resources.items() if r["Type"] == "AWS::Lambda::Function"}
    tables = {k for k, r in all_resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    services = {
        resolve(r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"])
        for k, r in all_resources.items()
        if k in functions
    }
    assert all(STACK in service for service in services)  # two stacks' alarms stay apart
    namespaces = {
        r["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
        for k, r in all_resources.items()
        if k in functions
    }
    alarms = {k: r for k, r in all_resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    for logical, alarm in alarms.items():
        watched = _metric_dimensions(alarm)
        assert watched, logical
        for namespace, name, value in watched:
            if name == "ApiName":
                assert resolve(value) == api_name, (logical, value, api_name)
            elif name == "FunctionName":
                assert value.get("Ref") in functions, (logical, value)
            elif name == "TableName":
                assert value.get("Ref") in tables, (logical, value)
            elif name == "service":
                assert namespace in namespaces and resolve(value) in services, (logical, value)
            else:
                pytest.fail(f"{logical}: unchecked dimension {name}")


def test_the_metrics_the_alarms_count_are_emitted_by_the_code() -> None:
    from tests.support.server import ROOT

    code = (ROOT / "layers" / "core" / "iris_exec" / "aws" / "lambda_app.py").read_text()
    for alarm in resources().values():
        props = alarm.get("Properties", {})
        if alarm["Type"] == "AWS::CloudWatch::Alarm" and props.get("Namespace") == "IrisExec":
            assert f'name="{props["MetricName"]}"' in code


def test_the_alarms_cover_the_asynchronous_functions_and_the_tables() -> None:
    watched = {
        (ns, str(value.get("Ref") if isinstance(value, dict) else value))
        for alarm in resources().values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
        for ns, _, value in _metric_dimensions(alarm)
    }
    for function in ("WorkerFunction", "ReaperFunction", "AuthorizerFunction"):
        assert ("AWS/Lambda", function) in watched, function
    for logical, resource in resources().items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            assert ("AWS/DynamoDB", logical) in watched, logical


def test_a_fresh_account_gets_api_gateways_cloudwatch_role_before_the_stage() -> None:
    """Stage logging fails in an account/Region without API Gateway's CloudWatch role."""
    all_resources = resources()
    (account,) = [k for k, r in all_resources.items() if r["Type"] == "AWS::ApiGateway::Account"]
    role = all_resources[account]["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    policies = all_resources[role]["Properties"]["ManagedPolicyArns"]
    assert any("AmazonAPIGatewayPushToCloudWatchLogs" in str(p) for p in policies)
    for logical in (account, role):  # another stack may be using them
        assert all_resources[logical]["DeletionPolicy"] == "Retain"
    stages = [r for r in all_resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert len(stages) == 1  # and no unlogged extra "Stage" stage
    (deployment,) = [
        r for r in all_resources.values() if r["Type"] == "AWS::ApiGateway::Deployment"
    ]
    assert "StageName" not in deployment["Properties"]
    assert f"'Ref': '{account}'" in str(stages[0]["Properties"])  # created after the account


def test_the_reaper_schedule_does_not_retry_into_the_next_run() -> None:
    (schedule,) = [r for r in resources().values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    configs = [
        r["Properties"]
        for r in resources().values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "ReaperFunction"}
    ]
    assert configs and configs[0]["MaximumRetryAttempts"] == 0


def test_mcp_answers_get_and_delete_and_junk_tokens_stop_at_the_gateway() -> None:
    (api,) = [r for r in resources().values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    body = api["Properties"]["Body"]
    assert {"get", "post", "delete"} <= set(body["paths"]["/mcp"])
    schemes = body["components"]["securitySchemes"]
    authorizer = schemes["KeyAuthorizer"]["x-amazon-apigateway-authorizer"]
    pattern = re.compile(authorizer["identityValidationExpression"])
    from iris_exec.services.auth import new_api_key
    from iris_exec.services.tokens import ExecutionTokens

    token = ExecutionTokens(b"k" * 32, lambda: 0.0).mint("p", "sb_1", "ex_1", "s", 60, "u").token
    for good in (f"Bearer {new_api_key()}", f"Bearer {token}", f"bearer {new_api_key()}"):
        assert pattern.match(good), good
    for junk in ("Bearer x", "Basic abc", f"Bearer {new_api_key()}x", "sk_live_" + "a" * 43):
        assert not pattern.match(junk), junk
