"""`classify_failure` on real log tails: uv 0.13.9's own error texts, as bootstrap.sh logs them."""

from __future__ import annotations

import pytest

from tpuctl.ops.bootstrap import classify_failure

HEAD = """\
[tpuctl-bootstrap] start 2026-11-23T09:59:02Z hash=52b72ef802f6fc2f python=- torch=-
[tpuctl-bootstrap] uv 0.13.9
[tpuctl-bootstrap] creating venv with Python 3.11.7
[tpuctl-bootstrap] installing requirements
Using Python 3.11.7 environment at: .tpuctl/venvs/52b72ef802f6fc2f
"""

CONNECTION_REFUSED = HEAD + """\
error: Request failed after 3 retries in 4.4s
  cause: Failed to fetch: http://127.0.0.1:38609/simple/tinypkg/
  cause: error sending request for url (http://127.0.0.1:38609/simple/tinypkg/)
  cause: client error (Connect)
  cause: tcp connect error
  cause: Connection refused (os error 111)
"""

SERVICE_UNAVAILABLE = HEAD + """\
error: Request failed after 3 retries in 9.0s
  cause: Failed to fetch: http://127.0.0.1:18777/simple/tinypkg/
  cause: HTTP status server error (503 Service Unavailable) for url \
(http://127.0.0.1:18777/simple/tinypkg/)
"""

TOO_MANY_REQUESTS = HEAD + """\
error: Request failed after 3 retries in 8.0s
  cause: Failed to fetch: http://127.0.0.1:18777/simple/tinypkg/
  cause: HTTP status client error (429 Too Many Requests) for url \
(http://127.0.0.1:18777/simple/tinypkg/)
"""

TIMED_OUT = HEAD + """\
error: Request failed after 3 retries in 18.6s
  cause: Failed to fetch: http://127.0.0.1:18777/simple/tinypkg/
  cause: error sending request for url (http://127.0.0.1:18777/simple/tinypkg/)
  cause: operation timed out
"""

DNS = HEAD + """\
error: Request failed after 3 retries in 8.8s
  cause: Failed to fetch: http://pypi.internal.example/simple/tinypkg/
  cause: error sending request for url (http://pypi.internal.example/simple/tinypkg/)
  cause: client error (Connect)
  cause: dns error
  cause: error resolving DNS
  cause: failed to lookup address information: Name or service not known
"""

UNSATISFIABLE = ", we can conclude that your requirements are unsatisfiable.\n"

NO_SOLUTION = HEAD + """\
error: No solution found when resolving dependencies
  cause: Because there is no version of tinypkg==9.9 and you require tinypkg==9.9""" \
    + UNSATISFIABLE

NOT_IN_REGISTRY = HEAD + """\
error: No solution found when resolving dependencies
  cause: Because tinypkg was not found in the package registry and you require \
tinypkg==1.0""" + UNSATISFIABLE

INVALID_REQUIREMENT = """\
[tpuctl-bootstrap] installing requirements
error: Couldn't parse requirement in `.tpuctl/venvs/52b72ef802f6fc2f.req` at position 42
  cause: Expected one of `@`, `(`, `<`, `=`, `>`, `~`, `!`, `;`, found `p`
         tiny pkg ==
              ^
"""

NO_INTERPRETER = """\
[tpuctl-bootstrap] start 2026-11-23T09:59:02Z hash=52b72ef802f6fc2f python=3.99 torch=-
[tpuctl-bootstrap] uv 0.13.9
[tpuctl-bootstrap] creating venv with Python 3.99
error: No interpreter found for Python 3.99 in managed installations or search path

hint: uv embeds available Python downloads and may require an update to install new \
versions. Consider retrying on a newer version of uv.
"""


@pytest.mark.parametrize("tail", [CONNECTION_REFUSED, SERVICE_UNAVAILABLE, TOO_MANY_REQUESTS,
                                  TIMED_OUT, DNS],
                         ids=["refused", "503", "429", "timeout", "dns"])
def test_network_trouble_is_transient(tail: str) -> None:
    assert classify_failure(tail) == "transient"


@pytest.mark.parametrize("tail", [NO_SOLUTION, NOT_IN_REGISTRY, INVALID_REQUIREMENT],
                         ids=["no-solution", "not-in-registry", "invalid-requirement"])
def test_bad_requirements_are_permanent(tail: str) -> None:
    assert classify_failure(tail) == "permanent"


@pytest.mark.parametrize("tail", [NO_INTERPRETER, "", "Killed\n",
                                  "[tpuctl-bootstrap] installing requirements\n"],
                         ids=["no-interpreter", "empty", "killed", "only-steps"])
def test_unknown_failures_are_permanent(tail: str) -> None:
    assert classify_failure(tail) == "permanent"


def test_a_permanent_marker_wins_over_a_transient_one() -> None:
    assert classify_failure(CONNECTION_REFUSED + NO_SOLUTION) == "permanent"


@pytest.mark.parametrize("step", [
    "[tpuctl-bootstrap] start 2026-11-23T09:59:02Z hash=0f1e2d3c4b5a6503 python=- torch=-",
    "[tpuctl-bootstrap] start 2026-11-23T09:59:02Z hash=0f1e2d3c4b5a6429 python=- torch=-",
    "[tpuctl-bootstrap] installing the project at work/network-timeout-study",
])
def test_own_step_lines_do_not_make_a_failure_transient(step: str) -> None:
    # a hash that ends in a status code, or a project named after network words, is no
    # evidence of a network error: the unknown failure after it stays permanent
    tail = step + "\nerror: Failed to build `study @ file:///w`\n  cause: exit status: 1\n"
    assert classify_failure(tail) == "permanent"


# A missing interpreter (bootstrap.sh exit 41): uv 0.13.9's texts, as the worker logs them.
PY_HEAD = """\
[tpuctl-bootstrap] start 2026-11-30T15:50:02Z hash=9d1c2b4e5f6a7b8c python=3.14 torch=-
[tpuctl-bootstrap] uv 0.13.9
[tpuctl-bootstrap] no Python 3.14 on this worker: uv python install 3.14
"""
PY_TAIL = ("[tpuctl-bootstrap] python-missing: Python 3.14 is not on this worker and uv could "
           "not install it\n")
NO_NETWORK = PY_HEAD + """\
error: Failed to install cpython-3.14.10-linux-x86_64-gnu
  cause: Request failed after 3 retries in 8.8s
  cause: Failed to download `https://github.com/astral-sh/python-build-standalone/releases/\
download/20261110/cpython-3.14.10%2B20261110-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz`
  cause: client error (Connect)
  cause: dns error
  cause: failed to lookup address information: Name or service not known
""" + PY_TAIL
DOWNLOADS_OFF = PY_HEAD + """\
Python downloads are not allowed (`python-downloads = "never"`). Change to \
`python-downloads = "manual"` to allow explicit installs.
""" + PY_TAIL


def test_a_missing_python_names_the_version_and_uvs_reason_not_the_index() -> None:
    from tpuctl.ops.bootstrap import python_missing

    err = python_missing("3.14", 2, NO_NETWORK)
    assert err.exit_code == 1
    assert err.message.startswith("Python 3.14 is not on w2 and `uv python install 3.14` "
                                  "failed: error: Failed to install cpython-3.14.10")
    assert err.message.endswith("failed to lookup address information: Name or service not "
                                "known")
    assert "package index" not in err.message + (err.hint or "")
    assert "python:" in (err.hint or "") and "github.com" in (err.hint or "")
    # downloads turned off (the emulator): uv's one line is the reason
    err = python_missing("3.14", 0, DOWNLOADS_OFF)
    assert err.message.endswith("failed: Python downloads are not allowed "
                                "(`python-downloads = \"never\"`). Change to "
                                "`python-downloads = \"manual\"` to allow explicit installs.")
    assert "no output from uv" in python_missing("3.14", 0, PY_HEAD + PY_TAIL).message
