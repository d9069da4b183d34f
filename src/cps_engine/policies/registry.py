"""The policy registry: built-in kinds, third-party plugins, loading configs, the JSON Schema.

Third-party policies register through the entry-point group ``cps_engine.policies`` (the entry point
names a :class:`~cps_engine.policies.base.PolicyConfig` subclass) or by calling :func:`register`.
Both check that the class really is a policy.

>>> load_policy({"kind": "capped_multilevel", "rates": ["10%", "5%", "2%"], "cap": "15%"}).cap
Fraction(3, 20)
>>> load_policy({"kind": "first_sharer", "rate": 0.1})
Traceback (most recent call last):
...
cps_engine.errors.FloatRejected: field 'rate': rate 0.1 is a float; write it as a string such as '10%'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, TypeAlias, Union, get_args

from pydantic import Field, TypeAdapter, ValidationError

from cps_engine.errors import CpsError, InvalidPolicyConfig, PolicyRegistrationError, brief
from cps_engine.policies.base import PolicyConfig, from_validation
from cps_engine.policies.capped_multilevel import CappedMultilevel
from cps_engine.policies.compliant import Compliant
from cps_engine.policies.first_sharer import FirstSharer
from cps_engine.policies.last_sharer import LastSharer
from cps_engine.policies.linear import Linear
from cps_engine.policies.position_based import PositionBased
from cps_engine.policies.time_decay import TimeDecay
from cps_engine.textio import check_depth, loads_json, loads_toml, read_text

__all__ = ["ENTRY_POINT_GROUP", "PolicyLike", "dump_policy", "load_policy", "policy_kinds", "policy_schema", "register"]

ENTRY_POINT_GROUP = "cps_engine.policies"
_BUILTIN: tuple[type[PolicyConfig], ...] = (FirstSharer, LastSharer, CappedMultilevel, Compliant, Linear,
                                             PositionBased, TimeDecay)
_KINDS: dict[str, type[PolicyConfig]] = {}
_plugins_loaded = False


def _kind_of(cls: type[PolicyConfig]) -> str:
    field = cls.model_fields.get("kind")
    args = get_args(field.annotation) if field is not None else ()
    if len(args) != 1 or not isinstance(args[0], str) or field is None or field.default != args[0]:
        raise PolicyRegistrationError(f"{cls.__name__} must declare kind: Literal['name'] = 'name'")
    return args[0]


def register(cls: type[PolicyConfig], *, replace: bool = False) -> type[PolicyConfig]:
    """Register a policy class (usable as a decorator).  Checks it is a real policy."""
    if not isinstance(cls, type) or not issubclass(cls, PolicyConfig):
        raise PolicyRegistrationError(f"{cls!r} is not a PolicyConfig subclass")
    if cls.awards is PolicyConfig.awards and cls.plan is PolicyConfig.plan:
        raise PolicyRegistrationError(f"{cls.__name__} implements neither awards(chain, order) nor plan()")
    kind = _kind_of(cls)
    if kind in _KINDS and _KINDS[kind] is not cls and not replace:
        raise PolicyRegistrationError(f"policy kind {kind!r} is already registered by {_KINDS[kind].__name__}")
    _KINDS[kind] = cls
    return cls


for _cls in _BUILTIN:
    register(_cls)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break the built-in policies
            raise PolicyRegistrationError(f"policy plugin {ep.name!r} failed to load: {exc}") from exc
        register(obj)


def policy_kinds() -> dict[str, type[PolicyConfig]]:
    """Every registered kind (built-in and plugins) and its config class."""
    _load_plugins()
    return dict(_KINDS)


#: what every entry point accepts as a policy: a config, a mapping, or a TOML/JSON file path
PolicyLike: TypeAlias = PolicyConfig | Mapping[str, Any] | str | Path


def load_policy(source: PolicyLike) -> PolicyConfig:
    """Build a policy from a TOML/JSON file path or a mapping (``kind`` picks the class); a config
    is returned as it is."""
    if isinstance(source, PolicyConfig):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            text = read_text(path, error=InvalidPolicyConfig)  # UTF-8, a BOM dropped
        except OSError as exc:
            raise InvalidPolicyConfig(f"cannot read policy file {brief(str(path))}: {exc.strerror}") from None
        try:  # strict: duplicate keys and nesting beyond MAX_JSON_DEPTH refused, never a RecursionError
            data: Any = (loads_json(text, error=InvalidPolicyConfig) if path.suffix.lower() == ".json"
                         else loads_toml(text, error=InvalidPolicyConfig))
            return load_policy(data)
        except CpsError as exc:
            raise exc.located(record=path.name) from None
    if not isinstance(source, Mapping):
        raise InvalidPolicyConfig(f"a policy is a mapping or a file path, not {type(source).__name__}")
    kind = source.get("kind")
    kinds = policy_kinds()
    if kind not in kinds:
        raise InvalidPolicyConfig(f"unknown policy kind {brief(kind)}; known: {', '.join(sorted(kinds))}",
                                  field="kind")
    check_depth(source, error=InvalidPolicyConfig)
    try:
        return kinds[kind].model_validate(dict(source))
    except ValidationError as exc:
        raise from_validation(exc) from None
    except CpsError:
        raise


def dump_policy(policy: PolicyConfig, fmt: str = "toml") -> str:
    """The policy config as TOML or JSON text that :func:`load_policy` reads back to an equal config."""
    data = policy.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    import tomli_w

    return tomli_w.dumps(data)


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy config: one of the registered kinds, chosen by ``kind``."""
    classes = tuple(policy_kinds().values())
    union = Annotated[Union[classes], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    schema: dict[str, Any] = TypeAdapter(union).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cps_engine policy"
    return schema
