import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import UsageError
from tpuctl.naming import _NODE_RE, parse_labels, validate_node_name


@pytest.mark.parametrize("good", ["a", "my-task", "t1", "a" * 63, "qwen-7b-serve-2"])
def test_valid_names(good):
    assert validate_node_name(good) == good


@pytest.mark.parametrize(
    "bad,why",
    [
        ("My-Task", "lowercase letter"),
        ("1task", "lowercase letter"),
        ("task-", "hyphen"),
        ("a" * 64, "64 characters"),
        ("my_task", "only lowercase"),
        ("", "empty"),
        ("-rf", "lowercase letter"),
        ("a;rm -rf /", "only lowercase"),
    ],
)
def test_invalid_names_say_why_and_suggest(bad, why):
    with pytest.raises(UsageError) as e:
        validate_node_name(bad)
    assert why in e.value.message
    assert e.value.hint


@given(st.text(max_size=80))
def test_validation_agrees_with_the_tpu_id_rule(name):
    ok = bool(_NODE_RE.match(name))
    if ok:
        assert validate_node_name(name) == name
    else:
        with pytest.raises(UsageError) as e:
            validate_node_name(name)
        # a suggested fix, when offered, is itself valid
        if e.value.hint and e.value.hint.startswith("try "):
            assert _NODE_RE.match(e.value.hint[5:-1])


def test_labels():
    assert parse_labels(["team=ml", "exp=a-1"]) == {"team": "ml", "exp": "a-1"}
    for bad in ["team", "Team=x", "team=X", "managed-by=me", "k=" + "a" * 64]:
        with pytest.raises(UsageError):
            parse_labels([bad])


def test_owner_labels_name_the_account_and_keep_long_ones_apart():
    from tpuctl.naming import owner_label

    assert owner_label("Alice.Smith@Example.com") == "alice_smith_example_com"
    assert owner_label("root") == "root"
    assert owner_label("a" * 70 + "@x.com") != owner_label("a" * 70 + "@y.com")


@given(st.text(max_size=120))
def test_owner_labels_are_always_label_safe_and_stable(identity):
    import re

    from tpuctl.naming import owner_label

    value = owner_label(identity)
    assert re.fullmatch(r"[a-z0-9_-]{1,63}", value)
    assert value == owner_label(identity)  # the same user, the same label


def test_the_gcp_account_comes_from_the_credentials_when_they_say():
    from types import SimpleNamespace

    from tpuctl.cloud.gcp import account_of

    assert account_of(SimpleNamespace(service_account_email="sa@p.iam.gserviceaccount.com")) \
        == "sa@p.iam.gserviceaccount.com"
    assert account_of(SimpleNamespace(service_account_email="default",
                                      account="me@example.com")) == "me@example.com"
    assert account_of(SimpleNamespace()) is None
