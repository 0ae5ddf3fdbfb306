"""The recipe schema: a YAML file is data, validated with clear errors on unknown keys.

Hyperparameters do not belong here: they live in the program's own config file, which the
recipe's command names (one file per experiment, tracked in git).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tpuctl.errors import UsageError
from tpuctl.model import DEFAULT_SERVE_PORT
from tpuctl.naming import ENV_KEY_RE, parse_tags, validate_network, validate_subnetwork
from tpuctl.recipes.node import NodeBlock

T = TypeVar("T")
_PYTHON = re.compile(r"^3\.\d{1,2}$")


def check_python_version(v: str) -> str:
    """A venv's Python version as tpuctl takes it (recipes' `python:`, `--python`): 3.11."""
    if not _PYTHON.match(v):
        raise ValueError(f"python must look like 3.11, got {v[:20]!r}")
    return v


_RESERVED_ENV = ("TPUCTL_", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def check_env_keys(env: dict[str, str]) -> dict[str, str]:
    """A job's env names (a recipe's `env`, `launch --env`): valid, and none of those tpuctl
    sets itself at launch. ValueError naming the first bad one."""
    for key in env:
        if not ENV_KEY_RE.match(key):
            raise ValueError(f"invalid variable name {key!r}")
        if key.startswith(_RESERVED_ENV):
            raise ValueError(f"{key} is set by tpuctl at launch")
    return env


def _checked(check: Callable[..., T], value: Any, what: str) -> T:
    """A naming check's UsageError as the ValueError pydantic reports for the field."""
    try:
        return check(value, what)
    except UsageError as e:
        raise ValueError(e.message.replace(f"invalid {what} ", "", 1)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyncSpec(_Strict):
    via: Literal["bundle", "origin"] = "bundle"
    allow_dirty: bool = False


Seconds = Annotated[float, Field(gt=0)]


class Timeouts(_Strict):
    create: Seconds = 1800
    bootstrap: Seconds = 1800
    run: Seconds | None = None  # whole job; None = no limit
    ready: Seconds | None = None  # until ready_pattern appears


SGLANG_READY_LINE = "The server is fired up and ready to roll!"
SGLANG_PEER_LINE = "Starting dummy health check server"


class ServeSpec(_Strict):
    """An sglang-jax server on every worker, laid out by the planner (docs/serving.md)."""

    model: str  # a path in the repository (with config.json), or a hub id org/name
    sglang_version: str | None = None  # the version the argv must suit (planner semantics)
    dp: int | None = Field(None, gt=0)
    port: int = Field(DEFAULT_SERVE_PORT, gt=0, lt=65536)
    cpu: bool = False  # --device cpu --attention-backend native (the emulator)
    load_format: str | None = None  # e.g. dummy: random weights, no download
    server: list[str] = Field(default_factory=lambda: ["python", "-m", "sgl_jax.launch_server"])
    extra_args: list[str] = Field(default_factory=list)
    peer_pattern: str = SGLANG_PEER_LINE  # what ranks > 0 log once up
    health_path: str = "/health_generate"


class Recipe(_Strict):
    name: str | None = None  # node (task) name; defaults to the file's stem
    accelerator: str
    runtime: str = "auto"
    zone: str | None = None
    spot: bool = False
    # the node's network, as `create`'s flags (a `node:` block may hold them later)
    internal_ips: bool = False
    network: str | None = None
    subnetwork: str | None = None
    tags: list[str] = Field(default_factory=list)
    python: str | None = None  # e.g. "3.11"; None: the image's python3
    requirements: str | None = None  # path in the repo
    project_install: bool = False  # `pip install -e` the repo itself
    torch: Literal["cpu"] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secrets: str | None = None  # local .env file pushed before launch (never in the repo!)
    command: list[str] | str | None = None  # required unless `serve` is given
    serve: ServeSpec | None = None
    workdir: str | None = None  # relative to the repo root
    ready_pattern: str | None = None
    sync: SyncSpec = Field(default_factory=SyncSpec)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    node: NodeBlock = Field(default_factory=NodeBlock)  # capacity, VM options, data disks
    slices: int = Field(1, ge=1, le=256)  # > 1: a multislice group (one queued resource)

    @field_validator("env")
    @classmethod
    def _env_keys(cls, v: dict[str, str]) -> dict[str, str]:
        return check_env_keys(v)

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        return v if v is None else _checked(validate_network, v, "network")

    @field_validator("subnetwork")
    @classmethod
    def _subnetwork(cls, v: str | None) -> str | None:
        return v if v is None else _checked(validate_subnetwork, v, "subnetwork")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return list(_checked(parse_tags, v, "tags"))

    @field_validator("python")
    @classmethod
    def _python(cls, v: str | None) -> str | None:
        return v if v is None else check_python_version(v)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | str | None) -> list[str] | str | None:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("command is empty")
        return v

    @model_validator(mode="after")
    def _command_or_serve(self) -> Recipe:
        if (self.command is None) == (self.serve is None):
            raise ValueError("give exactly one of `command` or `serve`")
        return self

    @property
    def effective_ready_pattern(self) -> str | None:
        if self.ready_pattern is not None:
            return self.ready_pattern
        return re.escape(SGLANG_READY_LINE) if self.serve is not None else None

    @field_validator("ready_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    def command_line(self) -> str:
        """What the worker's bash runs: a list is quoted once, by code; a string is bash."""
        import shlex

        if self.command is None:
            return ""  # serving: per-rank commands come from the planner
        return self.command if isinstance(self.command, str) else shlex.join(self.command)


def _nul_field(data: object, where: str = "") -> str | None:
    """The dotted path of the first key or string value holding a NUL byte, if any."""
    if isinstance(data, str):
        return where or "(top)" if "\0" in data else None
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\0" in key:
            return here
        found = _nul_field(value, here)
        if found is not None:
            return found
    return None


def load_recipe(path: Path) -> tuple[Recipe, str]:
    """(recipe, node name). Every problem is one UsageError naming the file and field."""
    if not path.is_file():
        raise UsageError(f"recipe {str(path)!r} not found", hint="pass a path such as "
                         "recipes/quickstart.yaml")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"recipe {path}: not valid YAML{where}",
                         hint="fix the syntax; see docs/recipes.md") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path}: expected a mapping at the top",
                         hint="see docs/recipes.md for the fields")
    nul = _nul_field(data)
    if nul is not None:  # a list command is joined and sent NUL-separated from its env
        raise UsageError(f"recipe {path}: field {nul!r} holds a NUL byte",
                         hint="remove it (YAML writes it as \\0 or \\x00)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_type" and isinstance(err.get("input"), (bool, int, float)):
            raw = _raw_scalar(text, err["loc"]) or str(err["input"])
            kind = "boolean" if isinstance(err["input"], bool) else "number"
            raise UsageError(
                f"recipe {path}: field {loc!r}: YAML reads {raw} as the {kind} "
                f"{err['input']!r}, not as text", hint=f'quote it: {err["loc"][-1]}: "{raw}"'
            ) from None
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(Recipe.model_fields)
            raise UsageError(f"recipe {path}: unknown field {loc!r}",
                             hint=f"allowed fields: {allowed}") from None
        raise UsageError(f"recipe {path}: field {loc!r}: {msg}",
                         hint="see docs/recipes.md for the schema") from None
    from tpuctl.accelerators import parse_accelerator
    from tpuctl.naming import validate_node_name

    parse_accelerator(recipe.accelerator)
    name = recipe.name or re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")
    validate_node_name(name)
    return recipe, name


def _raw_scalar(text: str, loc: tuple[int | str, ...]) -> str | None:
    """The value at `loc` as written in the file (YAML's 3.10 is the number 3.1: a hint must
    show what the user wrote)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
    return node.value if isinstance(node, yaml.ScalarNode) else None
