"""Bad input over OTLP/gRPC gets the gRPC status an exporter acts on, sent
by the real grpcio client, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def call(endpoint: str, payload: bytes, compression=None):
    with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        export = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return export(payload, timeout=10, compression=compression)


def test_malformed_protobuf_is_invalid_argument(sonde):
    with pytest.raises(grpc.RpcError) as err:
        call(sonde.otlp_grpc_endpoint, b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed protobuf" in err.value.details()


def test_oversized_request_is_resource_exhausted(sonde_factory):
    s = sonde_factory("--max-request-bytes", "10000")
    with pytest.raises(grpc.RpcError) as err:
        call(s.otlp_grpc_endpoint, b"\x0a" + b"\x00" * 50_000)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Still serving: an empty, valid export succeeds.
    empty = metrics_service_pb2.ExportMetricsServiceRequest().SerializeToString()
    resp = metrics_service_pb2.ExportMetricsServiceResponse.FromString(call(s.otlp_grpc_endpoint, empty))
    assert not resp.HasField("partial_success")


def test_unknown_method_is_unimplemented(sonde):
    with grpc.insecure_channel(sonde.otlp_grpc_endpoint) as ch:
        # Metrics, traces and logs are served; profiles are not.
        profiles = ch.unary_unary("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export")
        with pytest.raises(grpc.RpcError) as err:
            profiles(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_gzip_compressed_request_is_accepted(sonde):
    empty = metrics_service_pb2.ExportMetricsServiceRequest().SerializeToString()
    raw = call(sonde.otlp_grpc_endpoint, empty, compression=grpc.Compression.Gzip)
    assert metrics_service_pb2.ExportMetricsServiceResponse.FromString(raw) is not None
