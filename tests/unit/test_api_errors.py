"""Each API failure maps to one typed error and one documented exit code."""

import pytest
from google.api_core import exceptions as gexc

from tpuctl.cloud.gcp import api_errors
from tpuctl.cloud.retry import is_transient_api_error
from tpuctl.errors import CloudError, ExitCode, NotFoundError, UsageError


@pytest.mark.parametrize(
    "exc,cls,code",
    [
        (gexc.NotFound("nope"), NotFoundError, ExitCode.NOT_FOUND),
        (gexc.Conflict("dup"), UsageError, ExitCode.USAGE),
        (gexc.AlreadyExists("dup"), UsageError, ExitCode.USAGE),
        (gexc.InvalidArgument("bad id"), UsageError, ExitCode.USAGE),
        (gexc.BadRequest("bad id"), UsageError, ExitCode.USAGE),
        (gexc.FailedPrecondition("not ready"), UsageError, ExitCode.USAGE),
        (gexc.PermissionDenied("no"), CloudError, ExitCode.CLOUD),
        (gexc.ResourceExhausted("stockout"), CloudError, ExitCode.CLOUD),
        (gexc.TooManyRequests("slow down"), CloudError, ExitCode.CLOUD),
        (gexc.ServiceUnavailable("down"), CloudError, ExitCode.CLOUD),
    ],
)
def test_mapping(exc, cls, code):
    with pytest.raises(cls) as e, api_errors("node 'x'"):
        raise exc
    assert e.value.exit_code == code
    assert "node 'x'" in e.value.message
    assert e.value.hint


@pytest.mark.parametrize(
    "exc,transient",
    [
        (gexc.TooManyRequests("x"), True),
        (gexc.ServiceUnavailable("x"), True),
        (gexc.InternalServerError("x"), True),
        (gexc.GatewayTimeout("x"), True),
        (gexc.InvalidArgument("x"), False),
        (gexc.NotFound("x"), False),
        (gexc.Conflict("x"), False),
        (gexc.PermissionDenied("x"), False),
        (gexc.ResourceExhausted("quota"), False),
        (ValueError("x"), False),
    ],
)
def test_retry_classification(exc, transient):
    assert is_transient_api_error(exc) is transient


def test_gcp_rate_limit_is_transient_although_it_says_quota():
    from google.rpc.error_details_pb2 import ErrorInfo

    rate = gexc.TooManyRequests(
        "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'",
        error_info=ErrorInfo(reason="RATE_LIMIT_EXCEEDED", domain="googleapis.com"))
    assert is_transient_api_error(rate)
    stockout = gexc.TooManyRequests("There is no more capacity in the zone \"us-east5-b\"")
    assert not is_transient_api_error(stockout)
    quota = gexc.TooManyRequests("Quota 'TPUV6E_CORES' exceeded. Limit: 16.0 in region")
    assert not is_transient_api_error(quota)


def test_not_found_names_the_request_without_the_clients_query_string():
    url = ("http://127.0.0.1:8470/v2/projects/p/locations/z/nodes/nope"
           "?%24alt=json%3Benum-encoding%3Dint")
    with pytest.raises(NotFoundError) as e, api_errors("node 'nope' in z"):
        raise gexc.NotFound(f"GET {url}: Resource 'projects/p/locations/z/nodes/nope' was "
                            "not found")
    assert "%24alt" not in e.value.message and "enum-encoding" not in e.value.message
    assert "/v2/projects/p/locations/z/nodes/nope:" in e.value.message
    assert "was not found" in e.value.message
