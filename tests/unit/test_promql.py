"""User PromQL confined to its namespace (runtime.promql), parsed by a real PromQL parser: every
selector gets the namespace, one naming another namespace is refused, and text that would not
survive a round trip is refused rather than sent."""

from __future__ import annotations

import pytest

from kubeforge_crds.modelserver import ModelServerSpec
from kubeforge_operator.modelserver.resolve import confinement_problem
from kubeforge_operator.runtime.promql import PromQLError, confine

NS = "team-a"


@pytest.mark.parametrize(
    ("query", "confined"),
    [
        ("up", 'up{namespace="team-a"}'),
        (
            'sum(rate(req{code=~"5.."}[5m])) / sum(rate(req[5m]))',
            'sum(rate(req{code=~"5..",namespace="team-a"}[5m])) / '
            'sum(rate(req{namespace="team-a"}[5m]))',
        ),
        ('req{namespace="team-a"}', 'req{namespace="team-a"}'),
        ("rate(req[5m:1m] offset 1h)", 'rate(req{namespace="team-a"}[5m:1m] offset 1h)'),
        ('{__name__=~"kube.*"}', '{__name__=~"kube.*",namespace="team-a"}'),
        (
            'label_replace(gpus, "namespace", "x", "", "")',
            'label_replace(gpus{namespace="team-a"}, "namespace", "x", "", "")',
        ),
        ("vector(1)", "vector(1)"),  # reads no series at all
    ],
)
def test_every_selector_gets_the_namespace(query: str, confined: str) -> None:
    assert confine(query, NS) == confined


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ('kubeforge_gpus{namespace="team-b"}', 'it selects namespace="team-b"'),
        ('kubeforge_gpus{namespace=~".*"}', 'it selects namespace=~".*"'),
        ('kubeforge_gpus{namespace!="team-a"}', 'it selects namespace!="team-a"'),
        ('sum(a) + sum(b{namespace="team-b"})', 'it selects namespace="team-b"'),
        ("sum(", "not valid PromQL"),
        # a quote inside a value must not let a second selector out: refused, not rewritten
        ('a{x="1\\"} or {namespace=\\"team-b"}', "cannot be confined safely"),
    ],
)
def test_queries_that_cannot_be_confined_are_refused(query: str, why: str) -> None:
    with pytest.raises(PromQLError, match=why.replace("(", r"\(").replace("*", r"\*")):
        confine(query, NS)


def test_a_model_server_reading_another_namespace_is_refused_naming_the_metric() -> None:
    spec = ModelServerSpec.model_validate(
        {
            "model": {"uri": "s3://m/v1"},
            "rollout": {
                "metrics": [
                    {"name": "error-rate", "type": "errorRate", "max": 0.05},
                    {
                        "name": "their-gpus",
                        "type": "promql",
                        "query": 'sum(kubeforge_gpus{namespace="team-b"})',
                        "max": 1,
                    },
                ]
            },
        }
    )
    problem = confinement_problem(spec, NS)
    assert problem is not None
    assert problem.reason == "PromQLOutsideNamespace"
    assert problem.message.startswith("spec.rollout.metrics[1].query: it selects")
