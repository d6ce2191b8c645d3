"""The deployed shape of template.yaml, checked without AWS (`make test-template`).

For each named parameter set (CASES) the template goes through SAM's own translator
(samtranslator, from the aws-sam-cli in .tools/venv) offline, and cfn_eval.Stack evaluates what
CloudFormation would deploy from the result: the parameters and Rules, the Conditions, the
resources and outputs that remain, and their intrinsics. The tests then assert that stack:

- routes: /auth/jwt, /auth/token-request, /auth/token (GET, POST) and /auth/revoke (POST), each
  integrated with its own function, and nothing else; Lambda permissions scoped to the route;
  or, with Endpoint=FunctionUrl, one Function URL per function and no API Gateway at all;
- the JWT authorizer on exactly every route when ApiJwtAuthorizer=true, on none otherwise;
- each function's environment: the policy per route (TokenPolicy, or TokenRoutesPolicy on the
  token routes), CALLER_TRUST_AUTHORIZER "true" exactly when the authorizer is on, the secret
  ids, the other settings, no secret values;
- IAM: one role per function, assumable by Lambda only, allowed secretsmanager:GetSecretValue
  on exactly the function's own secrets and logs:CreateLogStream/PutLogEvents on its own log
  group, nothing else; no wildcard actions, resources or principals in any IAM document;
- log groups with the configured retention; HTTP API stage throttling; CORS; the Outputs'
  authUrls per endpoint type;
- with ManagedInstances=true (Lambda Managed Instances) all of the above for the *ManagedFunction
  twins that replace the functions (test_managed_instances.py checks what only that mode adds).

Run: .tools/venv/bin/python -m unittest discover -s tests/template -v
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import unittest
from dataclasses import dataclass, field
from pathlib import Path

# Before samtranslator is imported: it reads the region from the environment; nothing contacts AWS.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["SAM_CLI_TELEMETRY"] = "0"

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the TOML parser aws-sam-cli itself uses
    import tomlkit as tomllib

from cfn_eval import GetAtt, Ref, Stack, Unresolvable  # noqa: E402
from samcli.yamlhelper import yaml_parse  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

# The translator's metrics are never published here (DummyMetricsPublisher); silence its reminder.
logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
SAMCONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
STACK_NAME = SAMCONFIG["default"]["global"]["parameters"]["stack_name"]
REGION = "us-east-1"
ACCOUNT = "123456789012"

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace", "x-amazon-apigateway-any-method"}


@dataclass(frozen=True)
class Function:
    logical_id: str
    binary: str
    route: str
    methods: frozenset[str]
    role: str
    log_group: str
    url: str
    output: str
    token_route: bool  # /auth/token-request and /auth/token use TokenRoutesPolicy when set

    @property
    def managed_id(self) -> str:
        """The function's twin deployed instead with ManagedInstances=true (on the capacity provider)."""
        return self.logical_id.removesuffix("Function") + "ManagedFunction"

    @property
    def api_methods(self) -> frozenset[str]:
        """The HTTP API's methods of this route: the function's, plus OPTIONS (CORS preflight,
        answered by the function where API Gateway's CORS does not) on the issuing routes."""
        return self.methods | ({"options"} if "get" in self.methods else set())


FUNCTIONS = [
    Function("IssueJwtFunction", "issue-jwt", "/auth/jwt", frozenset({"get", "post"}),
             "IssueJwtRole", "IssueJwtLogGroup", "IssueJwtUrl", "JwtAuthUrl", False),
    Function("IssueTokenRequestFunction", "issue-token-request", "/auth/token-request", frozenset({"get", "post"}),
             "IssueTokenRequestRole", "IssueTokenRequestLogGroup", "IssueTokenRequestUrl", "TokenRequestAuthUrl", True),
    Function("IssueAblyTokenFunction", "issue-ably-token", "/auth/token", frozenset({"get", "post"}),
             "IssueAblyTokenRole", "IssueAblyTokenLogGroup", "IssueAblyTokenUrl", "AblyTokenAuthUrl", True),
    Function("RevokeTokensFunction", "revoke-tokens", "/auth/revoke", frozenset({"post"}),
             "RevokeTokensRole", "RevokeTokensLogGroup", "RevokeTokensUrl", "RevokeUrl", False),
]

ABLY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/ably-key-AbCdEf"
HS256_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/session-hs256-GhIjKl"
ROUTES_POLICY = '{"clientId":"{sub}","ttlSeconds":900,"capability":{"chat:*":["subscribe"]}}'
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI"

# Settings copied from a parameter straight into every function's environment.
ENV_FROM_PARAMETER = {
    "ABLY_API_KEY_SECRET_FIELD": "AblyApiKeySecretField",
    "ABLY_KEY_REVOCABLE": "AblyKeyRevocable",
    "ABLY_QUERY_TIME": "AblyQueryTime",
    "CALLER_ISSUER": "CallerIssuer",
    "CALLER_AUDIENCE": "CallerAudience",
    "CALLER_AUDIENCE_CLAIM": "CallerAudienceClaim",
    "CALLER_JWKS_URL": "CallerJwksUrl",
    "CALLER_HS256_SECRET_ID": "CallerHs256SecretArn",
    "CALLER_HS256_SECRET_FIELD": "CallerHs256SecretField",
    "CALLER_COOKIE": "CallerCookie",
    "CORS_ALLOWED_ORIGINS": "CorsAllowedOrigins",
    "SECRET_CACHE_TTL_SECONDS": "SecretCacheTtlSeconds",
    "SECRET_MAX_STALENESS_SECONDS": "SecretMaxStalenessSeconds",
}
# Declared for `sam local invoke --env-vars`; in the cloud they must stay empty (= unset):
# secret values come from Secrets Manager, never from the environment.
ENV_EMPTY_IN_CLOUD = ("ABLY_API_KEY", "CALLER_HS256_SECRET", "ABLY_REST_URL")
# Unset in the cloud too: the level comes from LoggingConfig (AWS_LAMBDA_LOG_LEVEL); RUST_LOG is
# for debugging by hand.
ENV_UNSET_IN_CLOUD = ("RUST_LOG",)
# X-Ray's write actions have no resource-level permissions: the one "*" resource allowed, and
# only with Tracing=Active.
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# ManagedInstances=true: the capacity provider and the operator role SAM creates for it.
CAPACITY_PROVIDER = "ManagedInstancesCapacityProvider"
OPERATOR_ROLE = "ManagedInstancesCapacityProviderOperatorRole"
SUBNETS = "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788"
SECURITY_GROUP = "sg-0123456789abcdef0"


def managed_instances(params: dict[str, str]) -> bool:
    return params.get("ManagedInstances") == "true"


def function_id(fn: Function, params: dict[str, str]) -> str:
    """The logical id of the function deployed for `fn` under these (resolved) parameters."""
    return fn.managed_id if managed_instances(params) else fn.logical_id


@dataclass(frozen=True)
class Case:
    name: str
    about: str
    params: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("http_api_defaults",
         "every default (samconfig.toml pins no parameter): HTTP API, no authorizer, stack-created key secret"),
    Case("http_api_jwt_authorizer",
         "HTTP API with the JWT authorizer (Cognito issuer, two audiences), existing key secret, CORS",
         {"ApiJwtAuthorizer": "true", "CallerIssuer": ISSUER, "CallerAudience": "client-a,client-b",
          "CallerAudienceClaim": "client_id", "AblyApiKeySecretArn": ABLY_ARN,
          "CorsAllowedOrigins": "https://app.example.com,https://admin.example.com"}),
    Case("http_api_oidc_without_authorizer",
         "HTTP API, OIDC issuer verified by the functions themselves (no authorizer), cookie, JWKS URL",
         {"CallerIssuer": ISSUER, "CallerAudience": "client-a", "CallerJwksUrl": ISSUER + "/.well-known/jwks.json",
          "CallerCookie": "session", "CorsAllowedOrigins": "https://app.example.com"}),
    Case("http_api_hs256_existing_secret",
         "HTTP API, HS256 caller secret in Secrets Manager, existing key secret, TokenRoutesPolicy, "
         "custom throttling, retention, x86_64",
         {"CallerHs256SecretArn": HS256_ARN, "CallerHs256SecretField": "SESSION_KEY",
          "AblyApiKeySecretArn": ABLY_ARN, "AblyApiKeySecretField": "KEY", "TokenRoutesPolicy": ROUTES_POLICY,
          "ThrottlingRateLimit": "5", "ThrottlingBurstLimit": "10", "LogRetentionDays": "7",
          "Architecture": "x86_64", "LogLevel": "DEBUG", "SecretCacheTtlSeconds": "60"}),
    Case("observability",
         "X-Ray active, text logs, an SNS topic for the alarms, custom thresholds, Function URLs",
         {"Tracing": "Active", "LogFormat": "Text", "Endpoint": "FunctionUrl",
          "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:on-call",
          "ServerErrorRateThreshold": "2", "MisconfigurationThreshold": "3", "StaleSecretThreshold": "10",
          "UpstreamFailureThreshold": "20", "FunctionErrorThreshold": "4", "ApiGateway5xxThreshold": "9"}),
    Case("http_api_hs256_created_secret",
         "HTTP API, HS256 caller secret, stack-created key secret (two secrets, one of them the stack's)",
         {"CallerHs256SecretArn": HS256_ARN}),
    Case("function_urls_created_secret",
         "Function URLs with CORS, stack-created key secret",
         {"Endpoint": "FunctionUrl", "CorsAllowedOrigins": "https://app.example.com"}),
    Case("function_urls_existing_secret_hs256",
         "Function URLs without CORS, existing key secret, HS256 caller secret",
         {"Endpoint": "FunctionUrl", "AblyApiKeySecretArn": ABLY_ARN, "CallerHs256SecretArn": HS256_ARN}),
    Case("managed_instances_http_api",
         "Lambda Managed Instances with every LMI default (2048 MB, 2 GiB/vCPU, 64 per environment), HTTP API",
         {"ManagedInstances": "true", "ManagedInstancesSubnetIds": SUBNETS,
          "ManagedInstancesSecurityGroupIds": SECURITY_GROUP}),
    Case("managed_instances_function_urls",
         "Lambda Managed Instances on x86_64 with Function URLs, X-Ray, 8192 MB at 4 GiB/vCPU (2 vCPUs), "
         "128 per environment, a 48-vCPU ceiling, existing key secret, CORS",
         {"ManagedInstances": "true", "ManagedInstancesSubnetIds": "subnet-0a1b2c3d4e5f60718",
          "ManagedInstancesSecurityGroupIds": SECURITY_GROUP + ",sg-0fedcba9876543210",
          "ManagedInstancesMemorySize": "8192", "ExecutionEnvironmentMemoryGiBPerVCpu": "4",
          "PerExecutionEnvironmentMaxConcurrency": "128", "ManagedInstancesMaxVCpuCount": "48",
          "Architecture": "x86_64", "Endpoint": "FunctionUrl", "Tracing": "Active",
          "AblyApiKeySecretArn": ABLY_ARN, "CorsAllowedOrigins": "https://app.example.com"}),
    Case("revocable_key",
         "revocable Ably key (POST /auth/revoke live, TokenRoutesPolicy without revocationKey), query time, "
         "authorizer on",
         {"AblyKeyRevocable": "true", "AblyQueryTime": "true", "TokenRoutesPolicy": ROUTES_POLICY,
          "ApiJwtAuthorizer": "true", "CallerIssuer": ISSUER, "CallerAudience": "client-a",
          "TokenPolicy": '{"clientId":"{sub}","ttlSeconds":3600,"revocationKey":"{org}",'
                         '"capability":{"chat:*":["subscribe"]}}'}),
]


class _OfflinePolicyLoader:
    """The managed-policy loader SAM asks when a function names AWS managed policies by name.
    This template gives every function its own role, so SAM must never need it."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the SAM translator asked IAM for the managed policy list: a function uses "
                             "`Policies:` by name instead of its own role")


def load_template() -> dict:
    return yaml_parse(TEMPLATE_PATH.read_text())


def translate(template: dict, params: dict[str, str]) -> dict:
    """SAM's transform, as `sam deploy` gets it after `sam package` (CodeUri is an S3 object)."""
    sam = copy.deepcopy(template)
    sam.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://artifacts-bucket/ably-authurl/code.zip"
    for res in sam.get("Resources", {}).values():
        if res.get("Type") == "AWS::Serverless::Function" and "CodeUri" in res.get("Properties", {}):
            res["Properties"]["CodeUri"] = "s3://artifacts-bucket/ably-authurl/code.zip"
    return transform(sam, dict(params), _OfflinePolicyLoader())


def statements(document: dict, where: str) -> list[dict]:
    found = document.get("Statement")
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(s, dict) for s in found):
        raise AssertionError(f"{where}: policy document without a Statement list: {document!r}")
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


class DeployedShape:
    """The assertions, run for the parameter set in `case` (a subclass per case, below)."""

    case: Case
    stack: Stack

    @classmethod
    def setUpClass(cls) -> None:
        cls.translated = translate(load_template(), cls.case.params)
        cls.stack = Stack(cls.translated, cls.case.params, STACK_NAME)

    # -------------------------------------------------------------- helpers

    def where(self, resource: str) -> str:
        return f"[{self.case.name}] {resource}"

    def param(self, name: str) -> str:
        return self.stack.params[name]

    @property
    def managed(self) -> bool:
        return managed_instances(self.stack.params)

    def fid(self, fn: Function) -> str:
        """The logical id of `fn` as deployed: the plain function, or its ManagedInstances twin."""
        return function_id(fn, self.stack.params)

    @property
    def http_api(self) -> bool:
        return self.param("Endpoint") == "HttpApi"

    @property
    def authorizer(self) -> bool:
        return self.param("ApiJwtAuthorizer") == "true"

    @property
    def cors_origins(self) -> list[str]:
        value = self.param("CorsAllowedOrigins")
        return value.split(",") if value else []

    def expected_ably_secret(self):
        arn = self.param("AblyApiKeySecretArn")
        return arn if arn else Ref("AblyApiKeySecret")

    def expected_secrets(self) -> set:
        secrets = {self.expected_ably_secret()}
        if self.param("CallerHs256SecretArn"):
            secrets.add(self.param("CallerHs256SecretArn"))
        return secrets

    def resource(self, logical_id: str, resource_type: str) -> dict:
        res = self.stack.resources.get(logical_id)
        self.assertIsNotNone(res, f"{self.where(logical_id)}: not deployed under this parameter set")
        self.assertEqual(res["Type"], resource_type, f"{self.where(logical_id)}: wrong type")
        return res["Properties"]

    def api_body(self) -> dict:
        api = self.resource("AuthApi", "AWS::ApiGatewayV2::Api")
        self.assertIn("Body", api, f"{self.where('AuthApi')}: no OpenAPI Body")
        return api["Body"]

    def operations(self):
        for path, item in self.api_body().get("paths", {}).items():
            for method, op in item.items():
                if method.lower() in HTTP_METHODS:
                    yield path, method.lower(), op

    # -------------------------------------------------------------- parameters, rules

    def test_parameters_pass_the_rules(self):
        self.assertEqual(self.stack.rule_violations(), [],
                         f"[{self.case.name}] the template's Rules refuse this parameter set")

    # -------------------------------------------------------------- routes

    def test_routes_and_methods(self):
        apis = set(self.stack.of_type("AWS::ApiGatewayV2::Api"))
        rest = set(self.stack.of_type("AWS::ApiGateway::RestApi"))
        self.assertEqual(rest, set(), self.where("AWS::ApiGateway::RestApi") + ": a REST API is deployed")
        if not self.http_api:
            others = {rid for rid, r in self.stack.resources.items() if r["Type"].startswith("AWS::ApiGatewayV2::")}
            self.assertEqual(others, set(), self.where("ApiGatewayV2") + ": API Gateway resources with Endpoint=FunctionUrl")
            return
        self.assertEqual(apis, {"AuthApi"}, self.where("AWS::ApiGatewayV2::Api") + ": expected exactly one HTTP API")
        api = self.resource("AuthApi", "AWS::ApiGatewayV2::Api")
        self.assertIs(api.get("FailOnWarnings"), True, self.where("AuthApi") + ": FailOnWarnings is not true")
        for kind in ("Route", "Integration", "Authorizer"):
            extra = set(self.stack.of_type(f"AWS::ApiGatewayV2::{kind}"))
            self.assertEqual(extra, set(), self.where(f"AWS::ApiGatewayV2::{kind}") + ": defined outside the OpenAPI body")
        body = self.api_body()
        expected = {f.route: set(f.api_methods) for f in FUNCTIONS}
        actual = {path: {m.lower() for m in item if m.lower() in HTTP_METHODS} for path, item in body.get("paths", {}).items()}
        self.assertEqual(actual, expected, self.where("AuthApi.Body.paths") + ": routes or methods differ")
        by_route = {f.route: f for f in FUNCTIONS}
        for path, method, op in self.operations():
            fn = by_route[path]
            where = self.where(f"AuthApi.Body.paths[{path}].{method}")
            integration = op.get("x-amazon-apigateway-integration")
            self.assertIsInstance(integration, dict, f"{where}: no x-amazon-apigateway-integration")
            self.assertEqual(integration.get("type"), "aws_proxy", f"{where}: integration type")
            self.assertEqual(integration.get("httpMethod"), "POST", f"{where}: Lambda integrations are POSTed")
            self.assertEqual(integration.get("payloadFormatVersion"), "2.0", f"{where}: payload format")
            self.assertEqual(
                integration.get("uri"),
                f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/<{self.fid(fn)}.Arn>/invocations",
                f"{where}: integrated with the wrong function")

    def test_invoke_permissions(self):
        perms = self.stack.of_type("AWS::Lambda::Permission")
        urls = self.stack.of_type("AWS::Lambda::Url")
        for fn in FUNCTIONS:
            mine = {rid: p["Properties"] for rid, p in perms.items() if p["Properties"].get("FunctionName") == Ref(self.fid(fn))}
            fn_urls = {rid: u["Properties"] for rid, u in urls.items() if u["Properties"].get("TargetFunctionArn") == GetAtt(self.fid(fn), "Arn")}
            where = self.where(f"{self.fid(fn)} permissions")
            if self.http_api:
                self.assertEqual(fn_urls, {}, self.where(self.fid(fn)) + ": a Function URL with Endpoint=HttpApi")
                self.assertEqual(len(mine), 1, f"{where}: expected exactly one (API Gateway), got {sorted(mine)}")
                ((rid, perm),) = mine.items()
                self.assertEqual(perm.get("Principal"), "apigateway.amazonaws.com", self.where(rid) + ": principal")
                self.assertEqual(perm.get("Action"), "lambda:InvokeFunction", self.where(rid) + ": action")
                methods = {m.upper() for m in fn.api_methods}
                allowed = {f"arn:aws:execute-api:{REGION}:{ACCOUNT}:<AuthApi>/*/{m}{fn.route}" for m in methods | {"*"}}
                self.assertIn(perm.get("SourceArn"), allowed,
                              self.where(rid) + f": SourceArn is not scoped to this API's {fn.route}")
            else:
                self.assertEqual(sorted(fn_urls), [fn.url], self.where(self.fid(fn)) + ": expected exactly its Function URL")
                url = fn_urls[fn.url]
                self.assertEqual(url.get("AuthType"), "NONE", self.where(fn.url) + ": AuthType")
                kinds = sorted((p.get("Action"), p.get("Principal"), p.get("FunctionUrlAuthType"), p.get("InvokedViaFunctionUrl"))
                               for p in mine.values())
                self.assertEqual(kinds, [("lambda:InvokeFunction", "*", None, True),
                                         ("lambda:InvokeFunctionUrl", "*", "NONE", None)],
                                 f"{where}: expected the two public Function URL permissions, restricted to the URL")
                for rid, perm in mine.items():
                    self.assertNotIn("SourceArn", perm, self.where(rid) + ": unexpected SourceArn")
        targeted = {p["Properties"].get("FunctionName") for p in perms.values()}
        self.assertLessEqual(targeted, {Ref(self.fid(f)) for f in FUNCTIONS},
                             self.where("AWS::Lambda::Permission") + ": a permission on something else")

    # -------------------------------------------------------------- authorizer

    def test_authorizer_on_exactly_every_route_when_enabled(self):
        if not self.http_api:
            self.assertFalse(self.authorizer, "the Rules let an authorizer through with Function URLs")
            return
        body = self.api_body()
        schemes = body.get("components", {}).get("securitySchemes", {})
        jwt_schemes = {name: s for name, s in schemes.items() if "x-amazon-apigateway-authorizer" in s}
        self.assertNotIn("security", body, self.where("AuthApi.Body") + ": an API-wide `security`; expected per route")
        if not self.authorizer:
            self.assertEqual(jwt_schemes, {}, self.where("AuthApi.Body.components") + ": an authorizer although ApiJwtAuthorizer=false")
            for path, method, op in self.operations():
                self.assertFalse(op.get("security"), self.where(f"AuthApi.Body.paths[{path}].{method}") + ": security although ApiJwtAuthorizer=false")
            return
        self.assertEqual(len(jwt_schemes), 1, self.where("AuthApi.Body.components.securitySchemes") + ": expected one JWT authorizer")
        ((name, scheme),) = jwt_schemes.items()
        where = self.where(f"AuthApi.Body.components.securitySchemes.{name}")
        authorizer = scheme["x-amazon-apigateway-authorizer"]
        self.assertEqual(authorizer.get("type"), "jwt", f"{where}: authorizer type")
        self.assertEqual(authorizer.get("identitySource"), "$request.header.Authorization", f"{where}: identity source")
        self.assertEqual(authorizer.get("jwtConfiguration"),
                         {"issuer": self.param("CallerIssuer"), "audience": self.param("CallerAudience").split(",")},
                         f"{where}: issuer/audience are not CallerIssuer/CallerAudience")
        for path, method, op in self.operations():
            where = self.where(f"AuthApi.Body.paths[{path}].{method}")
            if method == "options":
                # Browsers send no credentials on a preflight: it must never need the authorizer.
                self.assertFalse(op.get("security"), f"{where}: the CORS preflight is behind the authorizer")
                continue
            self.assertEqual(op.get("security"), [{name: []}], f"{where}: not behind the JWT authorizer")

    def test_trusted_authorizer_context_has_no_way_around_the_authorizer(self):
        trusting = [self.fid(f) for f in FUNCTIONS
                    if self.resource(self.fid(f), "AWS::Lambda::Function")["Environment"]["Variables"].get("CALLER_TRUST_AUTHORIZER") == "true"]
        if not trusting:
            return
        self.assertEqual(self.stack.of_type("AWS::Lambda::Url"), {},
                         self.where("AWS::Lambda::Url") + f": {trusting} trust authorizer context but are reachable by URL")
        for rid, perm in self.stack.of_type("AWS::Lambda::Permission").items():
            self.assertEqual(perm["Properties"].get("Principal"), "apigateway.amazonaws.com",
                             self.where(rid) + ": a non-API Gateway invoker of functions that trust authorizer context")

    # -------------------------------------------------------------- functions

    def test_function_environment(self):
        functions = self.stack.of_type("AWS::Lambda::Function")
        self.assertEqual(set(functions), {self.fid(f) for f in FUNCTIONS}, self.where("AWS::Lambda::Function") + ": the set of functions")
        routes_policy = self.param("TokenRoutesPolicy") or self.param("TokenPolicy")
        for fn in FUNCTIONS:
            props = self.resource(self.fid(fn), "AWS::Lambda::Function")
            where = self.where(self.fid(fn))
            self.assertEqual(props.get("Runtime"), "provided.al2023", f"{where}: Runtime")
            self.assertEqual(props.get("Handler"), "bootstrap", f"{where}: Handler")
            self.assertEqual(props.get("Architectures"), [self.param("Architecture")], f"{where}: Architectures")
            self.assertEqual(props.get("Role"), GetAtt(fn.role, "Arn"), f"{where}: not its own role")
            self.assertEqual(self.stack.resources[self.fid(fn)].get("Metadata", {}).get("BuildProperties", {}).get("Binary"),
                             fn.binary, f"{where}: builds the wrong binary")
            # 128 MB on the default compute; ManagedInstancesMemorySize (LMI's minimum 2048) on LMI.
            self.assertEqual(str(props.get("MemorySize")), self.param("ManagedInstancesMemorySize") if self.managed else "128",
                             f"{where}: MemorySize")
            self.assertEqual("CapacityProviderConfig" in props, self.managed,
                             f"{where}: CapacityProviderConfig exactly with ManagedInstances=true")
            env = props.get("Environment", {}).get("Variables", {})
            expect_policy = routes_policy if fn.token_route else self.param("TokenPolicy")
            self.assertEqual(env.get("TOKEN_POLICY"), expect_policy,
                             f"{where}: TOKEN_POLICY is not {'TokenRoutesPolicy (or TokenPolicy)' if fn.token_route else 'TokenPolicy'}")
            self.assertEqual(env.get("CALLER_TRUST_AUTHORIZER"), "true" if self.authorizer else "false",
                             f"{where}: CALLER_TRUST_AUTHORIZER must be \"true\" exactly when the JWT authorizer is on")
            self.assertEqual(env.get("ABLY_API_KEY_SECRET_ID"), self.expected_ably_secret(), f"{where}: ABLY_API_KEY_SECRET_ID")
            for var, param in ENV_FROM_PARAMETER.items():
                self.assertEqual(env.get(var), self.param(param), f"{where}: {var} is not the parameter {param}")
            for var in ENV_EMPTY_IN_CLOUD + ENV_UNSET_IN_CLOUD:
                self.assertEqual(env.get(var, ""), "", f"{where}: {var} must be empty in the cloud")
            self.assertEqual(env.get("METRICS_NAMESPACE"), f"AblyAuth/{STACK_NAME}", f"{where}: METRICS_NAMESPACE")
            self.assertEqual(props.get("TracingConfig"), {"Mode": self.param("Tracing")}, f"{where}: TracingConfig")
            self.assertTrue(all(isinstance(v, (str, Ref, GetAtt)) for v in env.values()),
                            f"{where}: an environment value that is not a string: {env!r}")

    # -------------------------------------------------------------- IAM

    def role_statements(self, role_id: str) -> list[tuple[str, dict]]:
        role = self.resource(role_id, "AWS::IAM::Role")
        found = []
        for policy in role.get("Policies", []):
            name = policy.get("PolicyName")
            found += [(f"{role_id}.Policies[{name}]", s) for s in statements(policy["PolicyDocument"], self.where(role_id))]
        for arn in role.get("ManagedPolicyArns", []):
            self.assertIsInstance(arn, Ref, self.where(role_id) + f": managed policy {arn!r} is not one of the stack's")
            doc = self.resource(arn.logical_id, "AWS::IAM::ManagedPolicy")["PolicyDocument"]
            found += [(arn.logical_id, s) for s in statements(doc, self.where(arn.logical_id))]
        for pid, pol in self.stack.of_type("AWS::IAM::Policy").items():
            if Ref(role_id) in pol["Properties"].get("Roles", []):
                found += [(pid, s) for s in statements(pol["Properties"]["PolicyDocument"], self.where(pid))]
        for pid, pol in self.stack.of_type("AWS::IAM::ManagedPolicy").items():
            if Ref(role_id) in pol["Properties"].get("Roles", []):
                found += [(pid, s) for s in statements(pol["Properties"]["PolicyDocument"], self.where(pid))]
        return found

    def test_each_role_reads_only_its_own_secrets(self):
        roles = self.stack.of_type("AWS::IAM::Role")
        expected_roles = {f.role for f in FUNCTIONS} | ({OPERATOR_ROLE} if self.managed else set())
        self.assertEqual(set(roles), expected_roles,
                         self.where("AWS::IAM::Role") + ": one role per function (and the capacity provider's operator role), no others")
        for fn in FUNCTIONS:
            role = self.resource(fn.role, "AWS::IAM::Role")
            where = self.where(fn.role)
            trust = statements(role["AssumeRolePolicyDocument"], where)
            self.assertEqual(trust, [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
                             f"{where}: must be assumable by Lambda only")
            self.assertNotIn("PermissionsBoundary", role, f"{where}: unexpected permissions boundary")
            secrets, logs = set(), []
            for source, st in self.role_statements(fn.role):
                at = self.where(f"{source} (attached to {fn.role})")
                for key in ("NotAction", "NotResource", "NotPrincipal"):
                    self.assertNotIn(key, st, f"{at}: {key} grants everything but a list")
                self.assertEqual(st.get("Effect"), "Allow", f"{at}: only Allow statements are expected")
                actions = as_list(st.get("Action"))
                resources = as_list(st.get("Resource"))
                for action in actions:
                    if action == "secretsmanager:GetSecretValue":
                        secrets.update(resources)
                    elif action in ("logs:CreateLogStream", "logs:PutLogEvents"):
                        logs += resources
                    elif action in XRAY_ACTIONS and self.param("Tracing") == "Active":
                        self.assertEqual(resources, ["*"], f"{at}: X-Ray write actions take no resource")
                    else:
                        self.fail(f"{at}: allows {action!r}; the function needs only secretsmanager:GetSecretValue and its logs")
                if "secretsmanager:GetSecretValue" in actions:
                    self.assertEqual(len(actions), 1, f"{at}: GetSecretValue shares a statement with {actions}")
            self.assertEqual(secrets, self.expected_secrets(),
                             f"{where}: GetSecretValue must cover exactly the Ably key secret and, when configured, the HS256 secret")
            self.assertEqual(set(logs), {GetAtt(fn.log_group, "Arn")}, f"{where}: logs permissions not on its own log group only")
            env = self.resource(self.fid(fn), "AWS::Lambda::Function")["Environment"]["Variables"]
            reads = {env["ABLY_API_KEY_SECRET_ID"]} | ({env["CALLER_HS256_SECRET_ID"]} if env["CALLER_HS256_SECRET_ID"] else set())
            self.assertEqual(reads, secrets, f"{where}: the secrets the function reads differ from those its role may read")

    def test_no_wildcards_in_iam(self):
        for rid, res in self.stack.resources.items():
            if not res["Type"].startswith("AWS::IAM::"):
                continue
            props = res["Properties"]
            for name_key in ("RoleName", "ManagedPolicyName", "UserName", "GroupName", "InstanceProfileName"):
                self.assertNotIn(name_key, props, self.where(rid) + f": {name_key} needs CAPABILITY_NAMED_IAM, "
                                 f"samconfig.toml grants {SAMCONFIG['default']['deploy']['parameters']['capabilities']}")
            docs = [("AssumeRolePolicyDocument", props.get("AssumeRolePolicyDocument")), ("PolicyDocument", props.get("PolicyDocument"))]
            docs += [(f"Policies[{p.get('PolicyName')}]", p.get("PolicyDocument")) for p in props.get("Policies", [])]
            for label, doc in docs:
                if doc is None:
                    continue
                for st in statements(doc, self.where(f"{rid}.{label}")):
                    at = self.where(f"{rid}.{label}")
                    for key in ("Action", "NotAction"):
                        for action in as_list(st.get(key, [])):
                            self.assertNotIn("*", str(action), f"{at}: wildcard {key} {action!r}")
                    xray_only = set(as_list(st.get("Action", []))) <= XRAY_ACTIONS and "Resource" in st
                    if xray_only:
                        self.assertEqual(self.param("Tracing"), "Active", f"{at}: X-Ray permissions without Tracing=Active")
                    for key in ("Resource", "NotResource"):
                        for resource in as_list(st.get(key, [])):
                            if xray_only and key == "Resource" and resource == "*":
                                continue
                            self.assertFalse(isinstance(resource, str) and "*" in resource, f"{at}: wildcard {key} {resource!r}")
                    principal = st.get("Principal")
                    if principal is not None:
                        self.assertNotEqual(principal, "*", f"{at}: wildcard Principal")
                        for value in (principal.values() if isinstance(principal, dict) else [principal]):
                            self.assertNotIn("*", as_list(value), f"{at}: wildcard Principal")
                    if label != "AssumeRolePolicyDocument":
                        self.assertIn("Resource", st, f"{at}: a statement without Resource")

    # -------------------------------------------------------------- secrets, logs, stage, CORS, outputs

    def test_key_secret_created_only_without_an_arn(self):
        secrets = set(self.stack.of_type("AWS::SecretsManager::Secret"))
        expected = set() if self.param("AblyApiKeySecretArn") else {"AblyApiKeySecret"}
        self.assertEqual(secrets, expected, self.where("AWS::SecretsManager::Secret") + ": created secrets")

    def test_log_groups_have_retention(self):
        groups = self.stack.of_type("AWS::Logs::LogGroup")
        self.assertEqual(set(groups), {f.log_group for f in FUNCTIONS}, self.where("AWS::Logs::LogGroup") + ": one log group per function")
        for fn in FUNCTIONS:
            group = self.resource(fn.log_group, "AWS::Logs::LogGroup")
            where = self.where(fn.log_group)
            self.assertEqual(str(group.get("RetentionInDays")), self.param("LogRetentionDays"), f"{where}: RetentionInDays")
            self.assertEqual(group.get("LogGroupName"), f"/aws/lambda/{STACK_NAME}/{fn.binary}", f"{where}: LogGroupName")
            logging = self.resource(self.fid(fn), "AWS::Lambda::Function").get("LoggingConfig", {})
            self.assertEqual(logging.get("LogGroup"), Ref(fn.log_group), self.where(self.fid(fn)) + ": does not log to its log group")
            self.assertEqual(logging.get("LogFormat"), self.param("LogFormat"), self.where(self.fid(fn)) + ": LogFormat")
            json_logs = self.param("LogFormat") == "JSON"
            self.assertEqual(logging.get("ApplicationLogLevel"), self.param("LogLevel") if json_logs else None,
                             self.where(self.fid(fn)) + ": ApplicationLogLevel (JSON logs only)")

    def test_http_api_stage_is_throttled(self):
        stages = self.stack.of_type("AWS::ApiGatewayV2::Stage")
        if not self.http_api:
            self.assertEqual(stages, {}, self.where("AWS::ApiGatewayV2::Stage") + ": a stage with Endpoint=FunctionUrl")
            return
        self.assertEqual(len(stages), 1, self.where("AWS::ApiGatewayV2::Stage") + f": expected one stage, got {sorted(stages)}")
        ((rid, stage),) = stages.items()
        props = stage["Properties"]
        where = self.where(rid)
        self.assertEqual(props.get("ApiId"), Ref("AuthApi"), f"{where}: not AuthApi's stage")
        self.assertEqual(props.get("StageName"), "$default", f"{where}: StageName (the authUrls have no stage prefix)")
        self.assertIs(props.get("AutoDeploy"), True, f"{where}: AutoDeploy")
        settings = props.get("DefaultRouteSettings", {})
        self.assertEqual(str(settings.get("ThrottlingRateLimit")), self.param("ThrottlingRateLimit"), f"{where}: ThrottlingRateLimit")
        self.assertEqual(str(settings.get("ThrottlingBurstLimit")), self.param("ThrottlingBurstLimit"), f"{where}: ThrottlingBurstLimit")
        self.assertFalse(props.get("RouteSettings"), f"{where}: per-route settings could lift the stage throttling")

    def test_cors_follows_the_one_parameter(self):
        origins = self.cors_origins
        if self.http_api:
            cors = self.api_body().get("x-amazon-apigateway-cors")
            where = self.where("AuthApi.Body.x-amazon-apigateway-cors")
            if not origins:
                self.assertIsNone(cors, f"{where}: CORS configured although CorsAllowedOrigins is empty")
                return
            self.assertEqual(cors.get("allowOrigins"), origins, f"{where}: allowOrigins")
            self.assertIs(cors.get("allowCredentials"), True, f"{where}: allowCredentials")
            self.assertLessEqual({"GET", "POST"}, set(cors.get("allowMethods", [])), f"{where}: allowMethods")
            self.assertLessEqual({"x-ably-errorcode", "x-ably-errormessage"}, set(cors.get("exposeHeaders", [])), f"{where}: exposeHeaders")
            return
        for fn in FUNCTIONS:
            cors = self.resource(fn.url, "AWS::Lambda::Url").get("Cors")
            where = self.where(f"{fn.url}.Cors")
            if not origins:
                self.assertIsNone(cors, f"{where}: CORS configured although CorsAllowedOrigins is empty")
                continue
            self.assertEqual(cors.get("AllowOrigins"), origins, f"{where}: AllowOrigins")
            self.assertIs(cors.get("AllowCredentials"), True, f"{where}: AllowCredentials")
            self.assertEqual(set(cors.get("AllowMethods", [])), {m.upper() for m in fn.methods}, f"{where}: AllowMethods")

    def test_outputs_auth_urls(self):
        outputs = self.stack.outputs
        created = not self.param("AblyApiKeySecretArn")
        expected_ids = {f.output for f in FUNCTIONS} | {"AblyApiKeySecret"} | ({"PutAblyApiKey"} if created else set())
        self.assertEqual(set(outputs), expected_ids, self.where("Outputs") + ": the set of outputs")
        for fn in FUNCTIONS:
            if self.http_api:
                expected = f"https://<AuthApi>.execute-api.{REGION}.amazonaws.com{fn.route}"
            else:
                expected = GetAtt(fn.url, "FunctionUrl")
            self.assertEqual(outputs[fn.output], expected, self.where(f"Outputs.{fn.output}") + ": wrong authUrl")
        self.assertEqual(outputs["AblyApiKeySecret"], self.expected_ably_secret(), self.where("Outputs.AblyApiKeySecret"))
        if created:
            self.assertIn("--secret-id '<AblyApiKeySecret>'", outputs["PutAblyApiKey"], self.where("Outputs.PutAblyApiKey"))


def _case_class(case: Case) -> type:
    name = f"Test_{case.name}"
    return type(name, (DeployedShape, unittest.TestCase), {"case": case, "__doc__": case.about, "__module__": __name__})


for _case in CASES:
    globals()[f"Test_{_case.name}"] = _case_class(_case)


class TestRefusedParameterSets(unittest.TestCase):
    """Parameter sets CloudFormation must refuse (Rules, AllowedPattern) before creating anything."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.template = load_template()

    def violations(self, params: dict[str, str]) -> list[str]:
        return Stack(translate(self.template, params), params, STACK_NAME).rule_violations()

    def test_authorizer_with_function_urls_is_refused(self):
        found = self.violations({"ApiJwtAuthorizer": "true", "Endpoint": "FunctionUrl", "CallerIssuer": ISSUER, "CallerAudience": "a"})
        self.assertEqual(len(found), 1, f"Rules: expected exactly the Endpoint assertion to fail, got {found}")
        self.assertIn("Endpoint=HttpApi", found[0])

    def test_authorizer_without_issuer_or_audience_is_refused(self):
        found = self.violations({"ApiJwtAuthorizer": "true"})
        self.assertEqual(len(found), 2, f"Rules: expected the CallerIssuer and CallerAudience assertions to fail, got {found}")
        self.assertTrue(any("CallerIssuer" in f for f in found) and any("CallerAudience" in f for f in found), found)

    def test_text_logs_with_a_level_are_refused(self):
        violations = self.violations({"LogFormat": "Text", "LogLevel": "DEBUG"})
        self.assertTrue(any("LogLevel must stay" in v for v in violations), violations)

    def test_wildcard_cors_origin_is_refused(self):
        with self.assertRaisesRegex(Unresolvable, "CorsAllowedOrigins.*AllowedPattern"):
            Stack(self.template, {"CorsAllowedOrigins": "*"}, STACK_NAME)

    def test_secret_name_without_suffix_is_refused(self):
        with self.assertRaisesRegex(Unresolvable, "AblyApiKeySecretArn.*AllowedPattern"):
            Stack(self.template, {"AblyApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/ably-key"}, STACK_NAME)


class TestEvaluatorIsStrict(unittest.TestCase):
    """cfn_eval refuses what it does not understand, so the tests above never assert on a guess."""

    BASE = {"Parameters": {"P": {"Type": "String", "Default": "a"}},
            "Conditions": {"IsA": {"Fn::Equals": [{"Ref": "P"}, "a"]}, "IsB": {"Fn::Equals": [{"Ref": "P"}, "b"]}}}

    def stack(self, resources: dict, outputs: dict | None = None) -> Stack:
        return Stack(dict(self.BASE, Resources=resources, Outputs=outputs or {}), {}, STACK_NAME)

    def test_unknown_intrinsic_fails(self):
        with self.assertRaisesRegex(Unresolvable, r"Resources\.R\.Properties\.X: unknown intrinsic Fn::Select"):
            self.stack({"R": {"Type": "T", "Properties": {"X": {"Fn::Select": [0, ["a"]]}}}})

    def test_reference_to_a_resource_not_deployed_fails(self):
        resources = {"B": {"Type": "T", "Condition": "IsB", "Properties": {}},
                     "R": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["B", "Arn"]}}}}
        with self.assertRaisesRegex(Unresolvable, "refers to B, which is not deployed"):
            self.stack(resources)

    def test_untaken_branch_may_refer_to_a_resource_not_deployed(self):
        resources = {"B": {"Type": "T", "Condition": "IsB", "Properties": {}}}
        stack = self.stack(resources, {"O": {"Value": {"Fn::If": ["IsB", {"Ref": "B"}, {"Fn::Sub": "${P}-${AWS::Region}"}]}}})
        self.assertEqual(stack.outputs["O"], "a-us-east-1")
        self.assertEqual(stack.resources, {})

    def test_no_value_removes_keys_and_items(self):
        stack = self.stack({"R": {"Type": "T", "Properties": {
            "K": {"Fn::If": ["IsB", "x", {"Ref": "AWS::NoValue"}]},
            "L": ["x", {"Fn::If": ["IsA", {"Ref": "AWS::NoValue"}, "y"]}]}}})
        self.assertEqual(stack.resources["R"]["Properties"], {"L": ["x"]})

    def test_unknown_sub_variable_and_condition_fail(self):
        with self.assertRaisesRegex(Unresolvable, "Nope is neither a parameter nor a resource"):
            self.stack({"R": {"Type": "T", "Properties": {"X": {"Fn::Sub": "${Nope}"}}}})
        with self.assertRaisesRegex(Unresolvable, "condition Missing is not declared"):
            self.stack({"R": {"Type": "T", "Condition": "Missing", "Properties": {}}})


if __name__ == "__main__":
    unittest.main()
