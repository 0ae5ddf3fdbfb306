"""tpuctl's hand-written encoders of libtpu's metrics messages (tpuctl/remote/tpu_metrics.py)
against protobuf itself: the messages declared here with the field numbers of the public
schema (tpu_info/proto/tpu_metric_service.proto in AI-Hypercomputer/cloud-accelerator-
diagnostics, the package `tpu.monitoring.runtime`), so what libtpu sends, with the fields our
reader skips (description, timestamps, counters), decodes to the same values."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.remote import tpu_metrics as tm

_T = {"string": 9, "bool": 8, "int64": 3, "double": 1, "message": 11}


@functools.cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(name="tpuctl_test_tpu_metric_service.proto",
                                           package="tpuctl_test.runtime", syntax="proto3")

    def msg(name: str, *fields: tuple[str, int, str, str | None, int | None, bool]) -> None:
        m = f.message_type.add(name=name)
        oneofs: dict[str, int] = {}
        for fname, num, ftype, type_name, _, repeated in fields:
            fd = m.field.add(name=fname, number=num, type=_T[ftype],
                             label=3 if repeated else 1)
            if type_name:
                fd.type_name = f".tpuctl_test.runtime.{type_name}"
        for fname, _, _, _, oneof, _ in fields:
            if oneof is not None:
                key = f"o{oneof}"
                if key not in oneofs:
                    oneofs[key] = len(m.oneof_decl)
                    m.oneof_decl.add(name=key)
                next(fd for fd in m.field if fd.name == fname).oneof_index = oneofs[key]

    msg("Timestamp", ("seconds", 1, "int64", None, None, False))
    msg("AttrValue", ("string_attr", 1, "string", None, 0, False),
        ("bool_attr", 2, "bool", None, 0, False), ("int_attr", 3, "int64", None, 0, False),
        ("double_attr", 4, "double", None, 0, False))
    msg("Attribute", ("key", 1, "string", None, None, False),
        ("value", 2, "message", "AttrValue", None, False))
    msg("Gauge", ("as_double", 1, "double", None, 0, False),
        ("as_int", 2, "int64", None, 0, False), ("as_string", 3, "string", None, 0, False),
        ("as_bool", 4, "bool", None, 0, False))
    msg("Metric", ("attribute", 1, "message", "Attribute", None, False),
        ("timestamp", 2, "message", "Timestamp", None, False),
        ("gauge", 3, "message", "Gauge", 0, False),
        ("start_timestamp", 7, "message", "Timestamp", None, False))
    msg("TPUMetric", ("name", 1, "string", None, None, False),
        ("description", 2, "string", None, None, False),
        ("metrics", 3, "message", "Metric", None, True))
    msg("MetricRequest", ("metric_name", 1, "string", None, None, False),
        ("skip_node_aggregation", 2, "bool", None, None, False))
    msg("MetricResponse", ("metric", 1, "message", "TPUMetric", None, False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tpuctl_test.runtime.{name}"))
        for name in ("MetricRequest", "MetricResponse")}


@pytest.fixture(scope="module")
def pb() -> dict[str, Any]:
    return _classes()


def test_a_request_is_what_protobuf_makes(pb) -> None:
    ours = tm.encode_request(tm.DUTY)
    theirs = pb["MetricRequest"](metric_name=tm.DUTY)
    assert ours == theirs.SerializeToString()
    assert tm.decode_request(pb["MetricRequest"](
        metric_name=tm.HBM_USED, skip_node_aggregation=True).SerializeToString()) == tm.HBM_USED


_values = st.lists(st.tuples(st.integers(0, 2**31), st.integers(-2**63, 2**63 - 1)
                             | st.floats(allow_nan=False)),
                   max_size=8, unique_by=lambda v: v[0])


@settings(max_examples=150, deadline=None)
@given(_values)
def test_libtpus_answers_decode_as_sent(values) -> None:
    """A response as libtpu would build it, description and timestamps included."""
    pb = _classes()
    resp = pb["MetricResponse"]()
    resp.metric.name = tm.DUTY
    resp.metric.description = "duty cycle"
    for device, value in reversed(values):
        m = resp.metric.metrics.add()
        m.attribute.key = tm.DEVICE_KEY
        m.attribute.value.int_attr = device
        m.timestamp.seconds = 1_700_000_000
        if isinstance(value, float):
            m.gauge.as_double = value
        else:
            m.gauge.as_int = value
    assert tm.decode_response(resp.SerializeToString()) == sorted(values)
    # and protobuf reads ours as the same message
    again = pb["MetricResponse"].FromString(tm.encode_response(tm.DUTY, sorted(values)))
    assert again.metric.name == tm.DUTY
    got = [(m.attribute.value.int_attr, m.gauge.as_double if m.gauge.WhichOneof("o0")
            == "as_double" else m.gauge.as_int) for m in again.metric.metrics]
    assert got == sorted(values)

