"""Lambda Managed Instances (ManagedInstances=true) in template.yaml, checked without AWS (`make test-template`).

The template translated by SAM and evaluated by cfn_eval, as test_deployed_shape.py does, for:

- every parameter set with ManagedInstances=false (the default): no capacity provider, no operator
  role, the plain functions with MemorySize 128 and none of the LMI properties;
- every parameter set with ManagedInstances=true: exactly one AWS::Lambda::CapacityProvider with the
  given subnets and security groups, instances of the functions' Architecture, the vCPU ceiling,
  and the SAM-made operator role (Lambda-only trust, the AWS managed operator policy, nothing
  else); each function replaced by its *ManagedFunction twin that names that capacity provider
  with the configured concurrency and memory per vCPU, ManagedInstancesMemorySize, publishes
  $LATEST.PUBLISHED on every deploy, carries nothing LMI excludes (VpcConfig, provisioned
  concurrency, versions or aliases) and otherwise equals the plain function;
- the Rules and parameter constraints that refuse an LMI configuration Lambda would refuse
  (no subnets or security groups, Text logs, less than one vCPU, out-of-range values);
- what `sam local` (SAM CLI's providers, offline) makes of the template: the routes go to the
  plain functions by default and to the twins with ManagedInstances=true.

The generic checks (routes, permissions, IAM, environment, logs, alarms, dashboard) run for the
ManagedInstances cases too: they are in test_deployed_shape.CASES.
"""

from __future__ import annotations

import copy
import logging
import sys
import unittest
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfn_eval import GetAtt, Ref, Stack, Unresolvable  # noqa: E402
from test_deployed_shape import (  # noqa: E402
    CAPACITY_PROVIDER,
    CASES,
    FUNCTIONS,
    OPERATOR_ROLE,
    SECURITY_GROUP,
    STACK_NAME,
    SUBNETS,
    TEMPLATE_PATH,
    load_template,
    managed_instances,
    translate,
)

logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)

REGION, ACCOUNT = "us-east-1", "123456789012"
CAPACITY_PROVIDER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:<{CAPACITY_PROVIDER}>"
OPERATOR_POLICY = "arn:aws:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"
LMI = {"ManagedInstances": "true", "ManagedInstancesSubnetIds": SUBNETS, "ManagedInstancesSecurityGroupIds": SECURITY_GROUP}
# The properties a twin adds to (or changes on) the plain function.
LMI_PROPERTIES = {"CapacityProviderConfig", "MemorySize", "PublishToLatestPublished"}
# What Lambda Managed Instances functions cannot carry (SAM refuses the first two next to
# CapacityProviderConfig; versions and aliases would only matter for provisioned concurrency).
EXCLUDED = {"VpcConfig", "ProvisionedConcurrencyConfig", "SnapStart", "ReservedConcurrentExecutions"}

_TEMPLATE = load_template()
_STACKS: dict[tuple, Stack] = {}


def stack(params: dict[str, str]) -> Stack:
    key = tuple(sorted(params.items()))
    if key not in _STACKS:
        _STACKS[key] = Stack(translate(_TEMPLATE, params), params, STACK_NAME)
    return _STACKS[key]


DEFAULT_CASES = [c for c in CASES if not managed_instances(c.params)]
LMI_CASES = [c for c in CASES if managed_instances(c.params)]


class TestCasesCoverBothModes(unittest.TestCase):
    def test_both_modes_have_cases(self):
        self.assertGreaterEqual(len(DEFAULT_CASES), 5)
        self.assertGreaterEqual(len(LMI_CASES), 2)
        self.assertIn("http_api_defaults", {c.name for c in DEFAULT_CASES})


class TestParameters(unittest.TestCase):
    """The ManagedInstances parameters as declared: off by default, LMI's ranges and minimums."""

    def setUp(self) -> None:
        self.params = _TEMPLATE["Parameters"]

    def test_off_by_default(self):
        self.assertEqual(self.params["ManagedInstances"]["Default"], "false")
        self.assertEqual(self.params["ManagedInstances"]["AllowedValues"], ["false", "true"])

    def test_vpc_lists_are_empty_lists_by_default(self):
        for name in ("ManagedInstancesSubnetIds", "ManagedInstancesSecurityGroupIds"):
            self.assertEqual(self.params[name]["Type"], "CommaDelimitedList", name)
            self.assertEqual(self.params[name]["Default"], "", name)

    def test_lmi_defaults_and_ranges(self):
        memory = self.params["ManagedInstancesMemorySize"]
        self.assertEqual(memory["Default"], 2048)  # LMI's minimum function size: 2 GB, 1 vCPU
        self.assertEqual(min(memory["AllowedValues"]), 2048)
        self.assertEqual(max(memory["AllowedValues"]), 32768)
        ratio = self.params["ExecutionEnvironmentMemoryGiBPerVCpu"]
        self.assertEqual(ratio["Default"], 2)
        self.assertEqual(ratio["AllowedValues"], [2, 4, 8])
        concurrency = self.params["PerExecutionEnvironmentMaxConcurrency"]
        self.assertEqual((concurrency["Default"], concurrency["MinValue"], concurrency["MaxValue"]), (64, 1, 1600))
        vcpus = self.params["ManagedInstancesMaxVCpuCount"]
        self.assertEqual((vcpus["Default"], vcpus["MinValue"], vcpus["MaxValue"]), (400, 12, 15000))

    def test_default_compute_keeps_128_mb(self):
        self.assertEqual(_TEMPLATE["Globals"]["Function"]["MemorySize"], 128)


class TestDefaultModeHasNoManagedInstances(unittest.TestCase):
    """ManagedInstances=false (every pre-existing case): the stack is what it was before LMI."""

    def test_no_capacity_provider_and_plain_functions(self):
        for case in DEFAULT_CASES:
            with self.subTest(case=case.name):
                s = stack(case.params)
                self.assertEqual(s.of_type("AWS::Lambda::CapacityProvider"), {})
                self.assertNotIn(OPERATOR_ROLE, s.resources)
                functions = s.of_type("AWS::Lambda::Function")
                self.assertEqual(set(functions), {f.logical_id for f in FUNCTIONS})
                for rid, fn in functions.items():
                    props = fn["Properties"]
                    self.assertNotIn("CapacityProviderConfig", props, rid)
                    self.assertNotIn("PublishToLatestPublished", props, rid)
                    self.assertEqual(props.get("MemorySize"), 128, rid)
                self.assertFalse(any("Managed" in rid for rid in s.resources), sorted(s.resources))


class ManagedInstancesShape:
    """ManagedInstances=true: the capacity provider and the twins (a subclass per case, below)."""

    case = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.stack = stack(cls.case.params)
        cls.plain = stack(dict(cls.case.params, ManagedInstances="false"))

    def param(self, name: str) -> str:
        return self.stack.params[name]

    def where(self, what: str) -> str:
        return f"[{self.case.name}] {what}"

    def test_exactly_one_capacity_provider_in_the_given_vpc(self):
        providers = self.stack.of_type("AWS::Lambda::CapacityProvider")
        self.assertEqual(set(providers), {CAPACITY_PROVIDER}, self.where("AWS::Lambda::CapacityProvider"))
        props = providers[CAPACITY_PROVIDER]["Properties"]
        self.assertEqual(props["VpcConfig"], {"SubnetIds": self.param("ManagedInstancesSubnetIds").split(","),
                                              "SecurityGroupIds": self.param("ManagedInstancesSecurityGroupIds").split(",")},
                         self.where("VpcConfig"))
        self.assertEqual(props["InstanceRequirements"], {"Architectures": [self.param("Architecture")]},
                         self.where("InstanceRequirements: the instances' architecture is the functions'"))
        self.assertEqual(props["CapacityProviderScalingConfig"],
                         {"MaxVCpuCount": self.param("ManagedInstancesMaxVCpuCount"), "ScalingMode": "Auto"},
                         self.where("CapacityProviderScalingConfig"))
        self.assertEqual(props["PermissionsConfig"], {"CapacityProviderOperatorRoleArn": GetAtt(OPERATOR_ROLE, "Arn")},
                         self.where("PermissionsConfig"))
        self.assertNotIn("CapacityProviderName", props, self.where("a fixed name would collide across stacks"))

    def test_operator_role_is_lambdas_and_has_only_the_operator_policy(self):
        role = self.stack.resources.get(OPERATOR_ROLE)
        self.assertIsNotNone(role, self.where(OPERATOR_ROLE))
        self.assertEqual(role["Type"], "AWS::IAM::Role")
        props = role["Properties"]
        self.assertEqual(props["AssumeRolePolicyDocument"]["Statement"],
                         [{"Action": ["sts:AssumeRole"], "Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}}],
                         self.where(f"{OPERATOR_ROLE}: assumable by Lambda only"))
        self.assertEqual(props["ManagedPolicyArns"], [OPERATOR_POLICY], self.where(f"{OPERATOR_ROLE}: managed policies"))
        self.assertNotIn("Policies", props, self.where(f"{OPERATOR_ROLE}: no inline policies"))
        self.assertNotIn("RoleName", props, self.where(f"{OPERATOR_ROLE}: RoleName needs CAPABILITY_NAMED_IAM"))

    def test_every_function_is_its_twin_on_the_capacity_provider(self):
        functions = self.stack.of_type("AWS::Lambda::Function")
        self.assertEqual(set(functions), {f.managed_id for f in FUNCTIONS}, self.where("AWS::Lambda::Function"))
        for fn in FUNCTIONS:
            props = functions[fn.managed_id]["Properties"]
            where = self.where(fn.managed_id)
            self.assertEqual(props["CapacityProviderConfig"], {"LambdaManagedInstancesCapacityProviderConfig": {
                "CapacityProviderArn": CAPACITY_PROVIDER_ARN,
                "PerExecutionEnvironmentMaxConcurrency": self.param("PerExecutionEnvironmentMaxConcurrency"),
                "ExecutionEnvironmentMemoryGiBPerVCpu": self.param("ExecutionEnvironmentMemoryGiBPerVCpu"),
            }}, f"{where}: CapacityProviderConfig")
            self.assertEqual(props["MemorySize"], self.param("ManagedInstancesMemorySize"), f"{where}: MemorySize")
            self.assertGreaterEqual(int(props["MemorySize"]), 2048, f"{where}: below LMI's minimum")
            self.assertIs(props["PublishToLatestPublished"], True,
                          f"{where}: unqualified invocations run $LATEST.PUBLISHED, which each deploy must republish")
            self.assertEqual(props["Architectures"], [self.param("Architecture")], f"{where}: Architectures")
            self.assertEqual(props["LoggingConfig"]["LogFormat"], "JSON", f"{where}: LogFormat")
            self.assertLessEqual(props["Timeout"], 900, f"{where}: Timeout")
            for name in EXCLUDED:
                self.assertNotIn(name, props, f"{where}: {name} is excluded on Lambda Managed Instances")

    def test_twins_equal_the_plain_functions_but_for_the_lmi_properties(self):
        for fn in FUNCTIONS:
            twin = copy.deepcopy(self.stack.resources[fn.managed_id])
            plain = copy.deepcopy(self.plain.resources[fn.logical_id])
            for res in (twin, plain):
                for name in LMI_PROPERTIES:
                    res["Properties"].pop(name, None)
            self.assertEqual(twin, plain, self.where(f"{fn.managed_id} differs from {fn.logical_id} beyond {sorted(LMI_PROPERTIES)}"))

    def test_no_versions_aliases_or_scaling_config(self):
        for kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Lambda::EventInvokeConfig"):
            self.assertEqual(self.stack.of_type(kind), {}, self.where(kind))
        for rid, fn in self.stack.of_type("AWS::Lambda::Function").items():
            self.assertNotIn("FunctionScalingConfig", fn["Properties"], self.where(f"{rid}: Lambda's default (three environments)"))

    def test_switching_the_mode_creates_new_functions(self):
        # Lambda cannot add or remove a capacity provider on an existing function: a mode switch
        # must replace the functions, which different logical ids make CloudFormation do.
        twins = set(self.stack.of_type("AWS::Lambda::Function"))
        plain = set(self.plain.of_type("AWS::Lambda::Function"))
        self.assertEqual(twins & plain, set(), self.where("functions shared by both modes"))
        self.assertEqual(set(self.stack.of_type("AWS::Logs::LogGroup")), set(self.plain.of_type("AWS::Logs::LogGroup")),
                         self.where("the log groups outlive a mode switch"))

    def test_invokers_target_the_twins(self):
        twins = {Ref(f.managed_id) for f in FUNCTIONS}
        for rid, perm in self.stack.of_type("AWS::Lambda::Permission").items():
            self.assertIn(perm["Properties"]["FunctionName"], twins, self.where(rid))
        for rid, url in self.stack.of_type("AWS::Lambda::Url").items():
            self.assertIn(url["Properties"]["TargetFunctionArn"], {GetAtt(f.managed_id, "Arn") for f in FUNCTIONS}, self.where(rid))
        dashboard = self.stack.resources["Dashboard"]["Properties"]["DashboardBody"]
        for fn in FUNCTIONS:
            self.assertIn(f'"FunctionName","<{fn.managed_id}>"', dashboard, self.where(f"Dashboard: {fn.managed_id}"))
            self.assertNotIn(f"<{fn.logical_id}>", dashboard, self.where(f"Dashboard: {fn.logical_id}"))


for _case in LMI_CASES:
    globals()[f"TestManagedInstances_{_case.name}"] = type(
        f"TestManagedInstances_{_case.name}", (ManagedInstancesShape, unittest.TestCase),
        {"case": _case, "__doc__": _case.about, "__module__": __name__})


class TestRefusedManagedInstancesSets(unittest.TestCase):
    """What Lambda Managed Instances would refuse, refused before anything is created."""

    def violations(self, **params: str) -> list[str]:
        return stack(params).rule_violations()

    def test_without_subnets_and_security_groups(self):
        found = self.violations(ManagedInstances="true")
        self.assertEqual(len(found), 2, found)
        self.assertTrue(any("needs ManagedInstancesSubnetIds" in f for f in found), found)
        self.assertTrue(any("needs ManagedInstancesSecurityGroupIds" in f for f in found), found)

    def test_an_empty_entry_counts_as_missing(self):
        found = self.violations(**dict(LMI, ManagedInstancesSubnetIds="subnet-0a1b2c3d4e5f60718,"))
        self.assertEqual(len(found), 1, found)
        self.assertIn("needs ManagedInstancesSubnetIds", found[0])

    def test_vpc_lists_are_not_needed_by_default(self):
        self.assertEqual(self.violations(), [])

    def test_text_logs(self):
        found = self.violations(**dict(LMI, LogFormat="Text"))
        self.assertEqual(len(found), 1, found)
        self.assertIn("needs LogFormat=JSON", found[0])
        self.assertEqual(self.violations(LogFormat="Text"), [], "Text logs stay allowed on the default compute")

    def test_less_than_one_vcpu(self):
        for memory, ratio in (("2048", "4"), ("2048", "8"), ("4096", "8")):
            with self.subTest(memory=memory, ratio=ratio):
                found = self.violations(**dict(LMI, ManagedInstancesMemorySize=memory, ExecutionEnvironmentMemoryGiBPerVCpu=ratio))
                self.assertEqual(len(found), 1, found)
                self.assertIn("at least one vCPU", found[0])
        for memory, ratio in (("2048", "2"), ("4096", "4"), ("8192", "8"), ("32768", "2")):
            with self.subTest(memory=memory, ratio=ratio):
                self.assertEqual(self.violations(**dict(LMI, ManagedInstancesMemorySize=memory,
                                                        ExecutionEnvironmentMemoryGiBPerVCpu=ratio)), [])

    def test_out_of_range_values(self):
        for name, value, constraint in (("PerExecutionEnvironmentMaxConcurrency", "0", "MinValue"),
                                        ("PerExecutionEnvironmentMaxConcurrency", "1601", "MaxValue"),
                                        ("ExecutionEnvironmentMemoryGiBPerVCpu", "3", "AllowedValues"),
                                        ("ManagedInstancesMemorySize", "1024", "AllowedValues"),
                                        ("ManagedInstancesMaxVCpuCount", "11", "MinValue"),
                                        ("ManagedInstances", "yes", "AllowedValues")):
            with self.subTest(name=name, value=value):
                with self.assertRaisesRegex(Unresolvable, f"{name}.*{constraint}"):
                    Stack(_TEMPLATE, dict(LMI, **{name: value}), STACK_NAME)


class TestEvaluatorListParameters(unittest.TestCase):
    """cfn_eval's CommaDelimitedList and Fn::Contains, which the LMI rules rely on."""

    BASE = {"Parameters": {"L": {"Type": "CommaDelimitedList", "Default": ""}},
            "Rules": {"R": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [{"Ref": "L"}, ""]}]},
                                            "AssertDescription": "L needs items"}]}},
            "Resources": {"X": {"Type": "T", "Properties": {"Items": {"Ref": "L"}}}}}

    def test_empty_list_is_one_empty_item(self):
        s = Stack(self.BASE, {}, STACK_NAME)
        self.assertEqual(s.resources["X"]["Properties"]["Items"], [""])
        self.assertEqual(s.rule_violations(), ["R: L needs items"])

    def test_items(self):
        s = Stack(self.BASE, {"L": "a,b"}, STACK_NAME)
        self.assertEqual(s.resources["X"]["Properties"]["Items"], ["a", "b"])
        self.assertEqual(s.rule_violations(), [])

    def test_contains_is_refused_in_conditions(self):
        template = dict(self.BASE, Conditions={"C": {"Fn::Contains": [{"Ref": "L"}, ""]}},
                        Resources={"X": {"Type": "T", "Condition": "C", "Properties": {}}})
        with self.assertRaisesRegex(Unresolvable, "Fn::Contains is a rule function"):
            Stack(template, {}, STACK_NAME)


class TestSamLocalSeesTheRightFunctions(unittest.TestCase):
    """`sam local start-api` / `sam local invoke` read the template through SAM CLI's providers
    (conditions and !If resolved with the parameters): the routes must reach the deployed variant."""

    def routes(self, params: dict[str, str]) -> dict[str, str]:
        from samcli.lib.providers.api_provider import ApiProvider
        from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # SAM CLI's own validator's
            stacks, _ = SamLocalStackProvider.get_stacks(str(TEMPLATE_PATH), parameter_overrides=params)
            return {route.path: route.function_name for route in ApiProvider(stacks).routes}

    def test_default_routes_go_to_the_plain_functions(self):
        self.assertEqual(self.routes({}), {f.route: f.logical_id for f in FUNCTIONS})

    def test_managed_instances_routes_go_to_the_twins(self):
        self.assertEqual(self.routes(LMI), {f.route: f.managed_id for f in FUNCTIONS})


if __name__ == "__main__":
    unittest.main()
