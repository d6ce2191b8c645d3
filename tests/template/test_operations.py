"""Alarms and dashboard of template.yaml against the metrics the code emits (`make test-template`).

`emitted-metrics.json` is what the functions' Embedded Metric Format lines publish — metric,
dimension set, unit and the dimension values seen — generated from the real log lines by
`tests/tests/metrics_catalogue.rs` (which fails when the code and the file disagree). For each
parameter set of test_deployed_shape.CASES this test proves that every alarm and every
dashboard widget names a metric and a dimension set the code emits, with dimension values it
emits, in the namespace the functions are given; that the AWS metrics they name (Lambda, API
Gateway) are this stack's; and that thresholds and the SNS topic follow the parameters.
"""

from __future__ import annotations

import json
import re
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfn_eval import Ref, Stack  # noqa: E402
from test_deployed_shape import CASES, FUNCTIONS, STACK_NAME, function_id, load_template, translate  # noqa: E402

CATALOGUE = json.loads((Path(__file__).resolve().parent / "emitted-metrics.json").read_text())
NAMESPACE = f"AblyAuth/{STACK_NAME}"

# metric name -> {sorted dimension keys -> {key: values}}
EMITTED: dict[str, dict[tuple[str, ...], dict[str, set[str]]]] = {}
for entry in CATALOGUE:
    EMITTED.setdefault(entry["metric"], {})[tuple(sorted(entry["dimensions"]))] = {
        k: set(v) for k, v in entry["values"].items()}

ALARMS = {
    "ServerErrorRateAlarm": "ServerErrorRateThreshold",
    "MisconfigurationAlarm": "MisconfigurationThreshold",
    "SecretsServedStaleAlarm": "StaleSecretThreshold",
    "UpstreamThrottlingAlarm": "UpstreamFailureThreshold",
    "FunctionErrorsAlarm": "FunctionErrorThreshold",
    "ApiGateway5xxAlarm": "ApiGateway5xxThreshold",
}
SEARCH = re.compile(r"""^SEARCH\('\{([^}]*)\} MetricName="([^"]+)"', '[A-Za-z0-9.]+', \d+\)$""")


class Operations:
    case = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.stack = Stack(translate(load_template(), cls.case.params), cls.case.params, STACK_NAME)

    def where(self, what: str) -> str:
        return f"[{self.case.name}] {what}"

    @property
    def http_api(self) -> bool:
        return self.stack.params["Endpoint"] == "HttpApi"

    def assert_emitted(self, at: str, namespace: str, metric: str, dimensions: dict[str, str | None]) -> None:
        """`metric` with `dimensions` (None: any value, a SEARCH) is one the code publishes."""
        if namespace == "AWS/Lambda":
            self.assertIn(metric, {"Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions"}, at)
            self.assertEqual(set(dimensions), {"FunctionName"}, at)
            # The deployed functions: the plain ones, or their twins with ManagedInstances=true.
            deployed = [function_id(f, self.stack.params) for f in FUNCTIONS]
            self.assertIn(dimensions["FunctionName"], {str(Ref(d)) for d in deployed} | {Ref(d) for d in deployed},
                          f"{at}: not one of the stack's functions")
            return
        if namespace == "AWS/ApiGateway":
            self.assertTrue(self.http_api, f"{at}: API Gateway metrics without the HTTP API")
            self.assertIn(metric, {"4xx", "5xx", "Count", "Latency", "IntegrationLatency"}, at)
            self.assertIn(dimensions.get("ApiId"), {"<AuthApi>", Ref("AuthApi")}, f"{at}: not the stack's API")
            return
        self.assertEqual(namespace, NAMESPACE, f"{at}: not the functions' METRICS_NAMESPACE")
        self.assertIn(metric, EMITTED, f"{at}: the code emits no metric {metric!r}")
        keys = tuple(sorted(dimensions))
        self.assertIn(keys, EMITTED[metric], f"{at}: {metric} is not emitted with the dimensions {keys} "
                                             f"(emitted: {sorted(EMITTED[metric])})")
        for key, value in dimensions.items():
            if value is not None:
                self.assertIn(value, EMITTED[metric][keys].get(key, set()),
                              f"{at}: the code never emits {metric} with {key}={value!r}")

    # -------------------------------------------------------------- alarms

    def test_alarms_watch_metrics_the_code_emits(self):
        alarms = self.stack.of_type("AWS::CloudWatch::Alarm")
        expected = set(ALARMS) - (set() if self.http_api else {"ApiGateway5xxAlarm"})
        self.assertEqual(set(alarms), expected, self.where("alarms"))
        for name, alarm in alarms.items():
            props = alarm["Properties"]
            metrics = props["Metrics"]
            ids = {m["Id"] for m in metrics}
            returned = [m for m in metrics if m.get("ReturnData", True)]
            self.assertEqual(len(returned), 1, self.where(f"{name}: exactly one returned series"))
            self.assertLessEqual(len(metrics), 10, self.where(f"{name}: at most 10 metrics in an alarm"))
            used = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", returned[0].get("Expression", "")))
            for m in metrics:
                if "MetricStat" not in m:
                    continue
                self.assertIn(m["Id"], used, self.where(f"{name}: {m['Id']} is not in the expression"))
                stat = m["MetricStat"]
                metric = stat["Metric"]
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                self.assert_emitted(self.where(f"{name}.{m['Id']}"), metric["Namespace"], metric["MetricName"], dims)
                self.assertEqual(stat["Period"], 300, self.where(f"{name}.{m['Id']}: period"))
            self.assertTrue(used - {"FILL"} <= ids, self.where(f"{name}: the expression names unknown ids {used - ids}"))
            self.assertEqual(str(props["Threshold"]), self.stack.params[ALARMS[name]], self.where(f"{name}: threshold parameter"))
            topic = self.stack.params["AlarmTopicArn"]
            for key in ("AlarmActions", "OKActions"):
                self.assertEqual(props.get(key), [topic] if topic else None, self.where(f"{name}: {key}"))

    # -------------------------------------------------------------- dashboard

    def test_dashboard_widgets_show_metrics_the_code_emits(self):
        dashboards = self.stack.of_type("AWS::CloudWatch::Dashboard")
        self.assertEqual(set(dashboards), {"Dashboard"}, self.where("dashboards"))
        body = json.loads(dashboards["Dashboard"]["Properties"]["DashboardBody"])
        seen = set()
        log_groups = {f"/aws/lambda/{STACK_NAME}/{f.binary}" for f in FUNCTIONS}
        for i, widget in enumerate(body["widgets"]):
            props = widget["properties"]
            at = self.where(f"widget {i} ({props.get('title', widget['type'])})")
            if widget["type"] == "log":
                sources = set(re.findall(r"SOURCE '([^']+)'", props["query"]))
                self.assertEqual(sources, log_groups, f"{at}: the functions' log groups")
                continue
            if widget["type"] != "metric":
                continue
            self.assertEqual(props["region"], "us-east-1", at)
            for line in props["metrics"]:
                if isinstance(line[0], dict):
                    found = SEARCH.match(line[0]["expression"])
                    self.assertIsNotNone(found, f"{at}: an expression that is not a SEARCH of one schema: {line[0]}")
                    namespace, *keys = [k.strip() for k in found.group(1).split(",")]
                    self.assert_emitted(at, namespace, found.group(2), {k: None for k in keys})
                    seen.add(found.group(2))
                    continue
                fields = [f for f in line if not isinstance(f, dict)]
                namespace, metric, pairs = fields[0], fields[1], fields[2:]
                self.assertEqual(len(pairs) % 2, 0, f"{at}: dimension names and values in pairs: {line}")
                self.assert_emitted(at, namespace, metric, dict(zip(pairs[::2], pairs[1::2])))
                seen.add(metric)
        # The list: issued vs refused, codes, p50/p99, cold starts, upstream health.
        for metric in ("Requests", "Refusals", "Duration", "ColdStart", "InitDuration", "UpstreamFailures",
                       "SecretsServedStale", "JwtBytes", "Errors", "Throttles"):
            self.assertIn(metric, seen, self.where(f"dashboard: no widget shows {metric}"))
        self.assertEqual("5xx" in seen, self.http_api, self.where("dashboard: the API widget follows Endpoint"))

    def test_every_emitted_metric_is_on_the_dashboard(self):
        body = json.loads(self.stack.of_type("AWS::CloudWatch::Dashboard")["Dashboard"]["Properties"]["DashboardBody"])
        text = json.dumps(body)
        for metric in EMITTED:
            self.assertIn(f'"{metric}"' if '"' not in metric else metric, text.replace('\\"', '"'),
                          self.where(f"dashboard: the emitted metric {metric} is shown nowhere"))


for _case in CASES:
    globals()[f"TestOperations_{_case.name}"] = type(
        f"TestOperations_{_case.name}", (Operations, unittest.TestCase),
        {"case": _case, "__doc__": _case.about, "__module__": __name__})


class LogLevelKeepsTheMetrics(unittest.TestCase):
    """Lambda drops JSON lines below its application log level itself, and the request lines
    that carry the metrics are INFO: the template offers no level above INFO."""

    def test_log_level_never_above_info(self):
        levels = load_template()["Parameters"]["LogLevel"]["AllowedValues"]
        self.assertIn("INFO", levels)
        for level in levels:
            self.assertIn(level, {"TRACE", "DEBUG", "INFO"}, f"LogLevel {level} would drop the metric lines")
