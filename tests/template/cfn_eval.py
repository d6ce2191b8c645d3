"""A small, strict evaluator of the CloudFormation the SAM translator leaves behind.

SAM's translator (samtranslator, from the aws-sam-cli venv) turns `AWS::Serverless::*` into
plain CloudFormation but leaves `Conditions`, `Condition:` on resources and the intrinsics
(`Fn::If`, `Ref`, `Fn::Sub`, ...) for CloudFormation to evaluate at deploy time. This module
does that part for one parameter set, as CloudFormation would, so that tests can assert the
resources that would really be deployed:

- parameters: the template's defaults, overridden by the case's values, checked against
  `AllowedValues`, `AllowedPattern`, `MinValue` (a case CloudFormation would refuse is an error);
  `Ref` to a `CommaDelimitedList` is the list of its comma-separated items (`""` is `[""]`);
- `Rules`: each rule whose `RuleCondition` holds must have all its `Assertions` true
  (`rule_violations`); besides the condition functions they may use `Fn::Contains`;
- `Conditions`: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`;
- resources and outputs whose `Condition` is false are dropped;
- values: `Ref` (parameter, pseudo parameter, `AWS::NoValue`, resource), `Fn::GetAtt`, `Fn::If`,
  `Fn::Sub`, `Fn::Split`, `Fn::Join`.

References to resources cannot be known offline, so they stay symbolic: `Ref("AuthApi")`,
`GetAtt("IssueJwtRole", "Arn")`; inside strings (`Fn::Sub`, `Fn::Join`) they are rendered as
`<AuthApi>` and `<IssueJwtFunction.Arn>`. A reference to a resource that is not deployed under
the parameter set (its condition is false) is an error, as CloudFormation refuses it too.

Anything else (another intrinsic, a malformed one) raises `Unresolvable` with the path where it
was found: the tests never assert on a value this evaluator did not understand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/STACK/00000000-0000-0000-0000-000000000000",
    "AWS::NotificationARNs": [],
}


class Unresolvable(AssertionError):
    """The evaluator met something it does not understand or CloudFormation would refuse."""


@dataclass(frozen=True)
class Ref:
    """`Ref` to a resource of the template (its physical id / ARN is only known at deploy time)."""

    logical_id: str

    def __str__(self) -> str:
        return f"<{self.logical_id}>"


@dataclass(frozen=True)
class GetAtt:
    """`Fn::GetAtt` of a resource of the template."""

    logical_id: str
    attribute: str

    def __str__(self) -> str:
        return f"<{self.logical_id}.{self.attribute}>"


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def _is_intrinsic(node: Any) -> bool:
    if not isinstance(node, dict) or len(node) != 1:
        return False
    (key,) = node
    return key == "Ref" or key.startswith("Fn::")


class Stack:
    """One template evaluated for one parameter set.

    `template` is the translated CloudFormation (a dict); `overrides` are the parameter values
    of the case (strings, as `--parameter-overrides` gives them); `stack_name` is
    `AWS::StackName`.
    """

    def __init__(self, template: dict, overrides: dict[str, str], stack_name: str) -> None:
        self.template = template
        self.params = self._parameters(template.get("Parameters", {}), overrides)
        self._list_params = {name for name, spec in template.get("Parameters", {}).items()
                             if spec.get("Type") == "CommaDelimitedList" or str(spec.get("Type", "")).startswith("List<")}
        self.pseudo = dict(PSEUDO_PARAMETERS, **{"AWS::StackName": stack_name})
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        raw = template.get("Resources", {})
        self.deployed_ids = {
            rid for rid, res in raw.items() if "Condition" not in res or self.condition(res["Condition"])
        }
        # Resolved lazily per resource; `resources` resolves them all (any failure surfaces).
        self.resources: dict[str, dict] = {}
        for rid in sorted(self.deployed_ids):
            res = raw[rid]
            body = {k: v for k, v in res.items() if k != "Condition"}
            for dep in self._as_list(body.get("DependsOn", [])):
                if dep not in self.deployed_ids:
                    raise Unresolvable(f"Resources.{rid}.DependsOn: {dep} is not deployed under these parameters")
            self.resources[rid] = self.resolve(body, f"Resources.{rid}")
        self.outputs: dict[str, Any] = {}
        for oid, out in template.get("Outputs", {}).items():
            if "Condition" in out and not self.condition(out["Condition"]):
                continue
            self.outputs[oid] = self.resolve(out["Value"], f"Outputs.{oid}.Value")

    # ------------------------------------------------------------------ parameters and rules

    @staticmethod
    def _as_list(value: Any) -> list:
        return value if isinstance(value, list) else [value]

    @staticmethod
    def _parameters(declared: dict, overrides: dict[str, str]) -> dict[str, str]:
        unknown = set(overrides) - set(declared)
        if unknown:
            raise Unresolvable(f"the case sets parameters the template does not declare: {sorted(unknown)}")
        values: dict[str, str] = {}
        for name, spec in declared.items():
            if name in overrides:
                value = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise Unresolvable(f"parameter {name} has no default and the case gives no value")
            value = str(value).lower() if isinstance(value, bool) else str(value)
            if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                raise Unresolvable(f"parameter {name}={value!r} is not one of its AllowedValues {spec['AllowedValues']}")
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                raise Unresolvable(f"parameter {name}={value!r} does not match its AllowedPattern {spec['AllowedPattern']}")
            if spec.get("Type") == "Number":
                try:
                    number = float(value)
                except ValueError:
                    raise Unresolvable(f"parameter {name}={value!r} is not a Number") from None
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    raise Unresolvable(f"parameter {name}={value!r} is below its MinValue {spec['MinValue']}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    raise Unresolvable(f"parameter {name}={value!r} is above its MaxValue {spec['MaxValue']}")
            values[name] = value
        return values

    def rule_violations(self) -> list[str]:
        """The `AssertDescription`s of the template's `Rules` that fail for these parameters."""
        failed = []
        for name, rule in self.template.get("Rules", {}).items():
            path = f"Rules.{name}"
            if "RuleCondition" in rule and not self._truth(rule["RuleCondition"], f"{path}.RuleCondition", in_rule=True):
                continue
            for i, assertion in enumerate(rule.get("Assertions", [])):
                if not self._truth(assertion["Assert"], f"{path}.Assertions[{i}]", in_rule=True):
                    failed.append(f"{name}: {assertion.get('AssertDescription', '(no description)')}")
        return failed

    # ------------------------------------------------------------------ conditions

    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise Unresolvable(f"condition {name} is not declared in Conditions")
        if name in self._evaluating:
            raise Unresolvable(f"condition {name} refers to itself")
        self._evaluating.add(name)
        value = self._truth(conditions[name], f"Conditions.{name}")
        self._evaluating.discard(name)
        self._conditions[name] = value
        return value

    def _truth(self, node: Any, path: str, in_rule: bool = False) -> bool:
        if not isinstance(node, dict) or len(node) != 1:
            raise Unresolvable(f"{path}: not a condition function: {node!r}")
        ((fn, args),) = node.items()
        if fn == "Condition":
            if in_rule:
                raise Unresolvable(f"{path}: Rules cannot refer to Conditions")
            return self.condition(args)
        if fn == "Fn::Contains":
            # Rules only: [list of strings, string], true when the string is one of the list.
            if not in_rule:
                raise Unresolvable(f"{path}: Fn::Contains is a rule function, not a condition function")
            if not isinstance(args, list) or len(args) != 2:
                raise Unresolvable(f"{path}: Fn::Contains takes a list and a value: {args!r}")
            items = self.resolve(args[0], f"{path}.Fn::Contains[0]")
            value = self.resolve(args[1], f"{path}.Fn::Contains[1]")
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or not isinstance(value, str):
                raise Unresolvable(f"{path}: Fn::Contains needs a list of strings and a string, got {items!r}, {value!r}")
            return value in items
        if fn == "Fn::Equals":
            if not isinstance(args, list) or len(args) != 2:
                raise Unresolvable(f"{path}: Fn::Equals takes two values: {args!r}")
            a, b = (self.resolve(v, f"{path}.Fn::Equals[{i}]") for i, v in enumerate(args))
            if not all(isinstance(v, str) for v in (a, b)):
                raise Unresolvable(f"{path}: Fn::Equals compares strings, got {a!r}, {b!r}")
            return a == b
        if fn == "Fn::Not":
            if not isinstance(args, list) or len(args) != 1:
                raise Unresolvable(f"{path}: Fn::Not takes one condition: {args!r}")
            return not self._truth(args[0], f"{path}.Fn::Not[0]", in_rule)
        if fn in ("Fn::And", "Fn::Or"):
            if not isinstance(args, list) or not 2 <= len(args) <= 10:
                raise Unresolvable(f"{path}: {fn} takes 2 to 10 conditions: {args!r}")
            values = [self._truth(c, f"{path}.{fn}[{i}]", in_rule) for i, c in enumerate(args)]
            return all(values) if fn == "Fn::And" else any(values)
        raise Unresolvable(f"{path}: unknown condition function {fn}")

    # ------------------------------------------------------------------ values

    def _resource_must_exist(self, logical_id: str, path: str) -> None:
        if logical_id not in self.template.get("Resources", {}):
            raise Unresolvable(f"{path}: {logical_id} is neither a parameter nor a resource")
        if logical_id not in self.deployed_ids:
            raise Unresolvable(f"{path}: refers to {logical_id}, which is not deployed under these parameters")

    def _ref(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise Unresolvable(f"{path}: Ref of a non-string {name!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            if name in self._list_params:
                return self.params[name].split(",")
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name.startswith("AWS::"):
            raise Unresolvable(f"{path}: unknown pseudo parameter {name}")
        self._resource_must_exist(name, path)
        return Ref(name)

    def _getatt(self, args: Any, path: str) -> GetAtt:
        if isinstance(args, str) and "." in args:
            args = args.split(".", 1)
        if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, str) for a in args)):
            raise Unresolvable(f"{path}: malformed Fn::GetAtt {args!r}")
        self._resource_must_exist(args[0], path)
        return GetAtt(args[0], args[1])

    def _sub(self, args: Any, path: str) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        elif isinstance(args, list) and len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], dict):
            text = args[0]
            variables = {k: self.resolve(v, f"{path}.Fn::Sub[1].{k}") for k, v in args[1].items()}
        else:
            raise Unresolvable(f"{path}: malformed Fn::Sub {args!r}")

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                value = self._getatt(name, path)
            else:
                value = self._ref(name, path)
            if isinstance(value, (Ref, GetAtt)):
                return str(value)
            if not isinstance(value, str):
                raise Unresolvable(f"{path}: Fn::Sub variable ${{{name}}} is not a string: {value!r}")
            return value

        return _SUB_VAR.sub(replace, text)

    def resolve(self, node: Any, path: str) -> Any:
        """`node` with every intrinsic evaluated; `AWS::NoValue` keys and items removed."""
        if _is_intrinsic(node):
            ((fn, args),) = node.items()
            if fn == "Ref":
                return self._ref(args, path)
            if fn == "Fn::GetAtt":
                return self._getatt(args, path)
            if fn == "Fn::If":
                if not (isinstance(args, list) and len(args) == 3 and isinstance(args[0], str)):
                    raise Unresolvable(f"{path}: malformed Fn::If {args!r}")
                chosen = args[1] if self.condition(args[0]) else args[2]
                return self.resolve(chosen, f"{path}.Fn::If[{args[0]}]")
            if fn == "Fn::Sub":
                return self._sub(args, path)
            if fn == "Fn::Split":
                if not (isinstance(args, list) and len(args) == 2 and isinstance(args[0], str)):
                    raise Unresolvable(f"{path}: malformed Fn::Split {args!r}")
                source = self.resolve(args[1], f"{path}.Fn::Split[1]")
                if not isinstance(source, str):
                    raise Unresolvable(f"{path}: Fn::Split of a non-string {source!r}")
                return source.split(args[0])
            if fn == "Fn::Join":
                if not (isinstance(args, list) and len(args) == 2 and isinstance(args[0], str)):
                    raise Unresolvable(f"{path}: malformed Fn::Join {args!r}")
                items = self.resolve(args[1], f"{path}.Fn::Join[1]")
                if not isinstance(items, list):
                    raise Unresolvable(f"{path}: Fn::Join of a non-list {items!r}")
                if not all(isinstance(i, (str, Ref, GetAtt)) for i in items):
                    raise Unresolvable(f"{path}: Fn::Join of non-strings {items!r}")
                return args[0].join(str(i) for i in items)
            raise Unresolvable(f"{path}: unknown intrinsic {fn} (the evaluator does not know it)")
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                resolved = self.resolve(value, f"{path}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(node, list):
            items = [self.resolve(v, f"{path}[{i}]") for i, v in enumerate(node)]
            return [i for i in items if i is not NO_VALUE]
        return node

    # ------------------------------------------------------------------ queries

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {rid: r for rid, r in self.resources.items() if r["Type"] == resource_type}
