"""Intent-based routing: map a client's scoring intent to one live and N shadow predictors.

Paper §2.5.1 and Figure 2. Clients send *what* they want scored (tenant, geography,
schema, channel, …), never *which model*; the server resolves the intent, so a model
switch or promotion is a routing-config change with no client involved (§2.5.1 (1)).

* **Scoring rules** are evaluated in order and the first match names the *live*
  predictor, whose score is returned to the client. ``condition: {}`` matches everything,
  so a catch-all goes last.
* **Shadow rules** are evaluated "in parallel": *every* matching rule fires, and the
  request is mirrored to its predictors for offline evaluation (§2.5.1 (2)). The shadow
  set is de-duplicated in order of first appearance and never repeats the live predictor
  (scoring the same predictor twice would only double the cost).

A condition is a conjunction of "attribute value is in this list"; its keys are the
*plurals* of the intent attributes (``tenants: [bank1]`` tests ``intent["tenant"]``). An
intent that lacks an attribute a condition tests does not match that condition.

The router sits on the request path of every event and must not slow down as tenants
are added (§2.5.1 (4), scalable multi-tenancy), so everything is decided at
construction: rules that test ``tenant`` are indexed by tenant value, and each tenant
gets its precomputed candidate list (its own rules merged, in config order, with the
rules that do not test tenant). ``route`` then does one dict lookup and checks only
those candidates. The module is pure and in-memory: no I/O, no global state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from muse._routing_config import NO_SCORING_RULES, Parser, suggest
from muse.errors import ConfigError, ConfigIssue, IntentError, NoRouteError
from muse.splits import Split
from muse.types import Intent

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "Route",
    "Router",
    "ScoringRule",
    "ShadowRule",
    "condition_key",
]

#: Intent attributes every deployment understands (§2.5.1: "tenant id, payment channel,
#: geography, etc."); deployments may declare more.
DEFAULT_ATTRIBUTES: tuple[str, ...] = ("tenant", "geography", "schema", "channel")

#: The attribute whose rules are indexed; tenants are the dimension that grows.
_INDEX_ATTRIBUTE = "tenant"

_ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

Condition: TypeAlias = Mapping[str, frozenset[str]]
_Checks: TypeAlias = tuple[tuple[str, frozenset[str]], ...]


def condition_key(attribute: str) -> str:
    """The condition key of an intent attribute: its plural (``geography`` → ``geographies``).

    Keys are plural because a condition lists the *values* it accepts (``tenants:
    [bank1, bank2]``), as in Figure 2. Regular rules only: consonant+y → ies;
    s/x/z/ch/sh → +es; otherwise +s.
    """
    lower = attribute.lower()
    if len(lower) >= 2 and lower.endswith("y") and lower[-2] not in "aeiou":
        return attribute[:-1] + "ies"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return attribute + "es"
    return attribute + "s"


def _freeze_condition(condition: Mapping[str, Iterable[str]]) -> Condition:
    for key, values in condition.items():
        _not_bare_string(f"condition[{key!r}]", values)
    return MappingProxyType({key: frozenset(values) for key, values in condition.items()})


def _not_bare_string(subject: str, values: object) -> None:
    # A str is an iterable of characters: frozenset("bank1") would silently test letters.
    if isinstance(values, str):
        raise TypeError(
            f"{subject} must be a collection of strings, got the bare string {values!r}; "
            f"wrap it, e.g. ({values!r},)"
        )


@dataclass(frozen=True, slots=True)
class ScoringRule:
    """A Figure 2 scoring rule: intents matching ``condition`` are served by ``target``.

    ``condition`` is keyed by the *singular* attribute (``tenant``) and is an immutable
    mapping to the accepted values; ``{}`` matches every intent. ``target`` is one
    predictor's name, or a :class:`~muse.splits.Split` sharing the rule's events between
    several predictors by weight (a canary), each event's arm chosen by its entity key.
    """

    description: str | None
    condition: Condition
    target: str | Split

    def __post_init__(self) -> None:
        object.__setattr__(self, "condition", _freeze_condition(self.condition))

    @property
    def predictors(self) -> tuple[str, ...]:
        """Every predictor that may serve this rule's events live (each arm of a split)."""
        t = self.target
        return (t,) if isinstance(t, str) else tuple(a.predictor for a in t.arms)

    def __hash__(self) -> int:
        return hash((self.description, frozenset(self.condition.items()), self.target))

    def matches(self, intent: Intent) -> bool:
        """Whether every tested attribute is present in ``intent`` with an accepted value."""
        return all(intent.get(key) in values for key, values in self.condition.items())


@dataclass(frozen=True, slots=True)
class ShadowRule:
    """A Figure 2 shadow rule: intents matching ``condition`` are mirrored to ``targets``."""

    description: str | None
    condition: Condition
    targets: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "condition", _freeze_condition(self.condition))
        _not_bare_string("targets", self.targets)
        object.__setattr__(self, "targets", tuple(self.targets))

    def __hash__(self) -> int:
        return hash((self.description, frozenset(self.condition.items()), self.targets))

    def matches(self, intent: Intent) -> bool:
        """Whether every tested attribute is present in ``intent`` with an accepted value."""
        return all(intent.get(key) in values for key, values in self.condition.items())


@dataclass(frozen=True, slots=True)
class Route:
    """Where one intent goes: the ``live`` predictor answers, ``shadows`` only get mirrored.

    ``rule`` is the description of the scoring rule that matched (``None`` if it has
    none), so every score can be audited back to the rule that chose its predictor.
    Instances are shared between calls; they are immutable so that is safe.

    When the rule is a canary ``split``, which arm answers depends on the event's entity
    key, not on the intent alone: ``live`` is then the first arm (the control) and
    :meth:`live_for` the predictor of one key; code that handles every live predictor
    iterates :attr:`predictors`. ``shadows`` may then name an arm: an event is never
    mirrored to the arm that serves it (the scoring pass skips it), and is to the others.
    """

    live: str
    shadows: tuple[str, ...]
    rule: str | None
    split: Split | None = None

    @property
    def predictors(self) -> tuple[str, ...]:
        """Every predictor that may answer this intent live."""
        if self.split is None:
            return (self.live,)
        return tuple(a.predictor for a in self.split.arms)

    def live_for(self, key: str) -> str:
        """The live predictor of an event whose entity key (or event id) is ``key``."""
        return self.live if self.split is None else self.split.predictor_for(key)


# One candidate in a precomputed list: the checks still to run (the indexed tenant test
# is already satisfied by the lookup) and what a match yields.
_ScoringEntry: TypeAlias = tuple[_Checks, Route]
_ShadowEntry: TypeAlias = tuple[_Checks, tuple[str, ...]]
# Scoring candidates, and shadow candidates or None when this bucket's shadows are the
# same for every intent (then they are already inside each scoring entry's Route).
_Bucket: TypeAlias = tuple[tuple[_ScoringEntry, ...], tuple[_ShadowEntry, ...] | None]


class Router:
    """Resolves intents to :class:`Route` s per the paper's routing rules (§2.5.1).

    Build with :meth:`from_config` from the ``routing`` block of a deployment config, or
    directly from rule objects. Immutable after construction and safe to share between
    threads; a routing change means building a new router (§2.5.2: config changes roll
    out as a restart, the routing layer keeps no state).
    """

    __slots__ = (
        "_attribute_set",
        "_attributes",
        "_buckets",
        "_default",
        "_predictors",
        "_scoring",
        "_shadow",
    )

    def __init__(
        self,
        scoring_rules: Iterable[ScoringRule],
        shadow_rules: Iterable[ShadowRule] = (),
        attributes: Iterable[str] = DEFAULT_ATTRIBUTES,
    ) -> None:
        """Validate the rules against the declared ``attributes`` and precompute the index.

        Raises :class:`~muse.errors.ConfigError` listing every problem (no scoring rule, a
        condition on an undeclared attribute, an empty target); paths are relative to the
        routing block, e.g. ``scoringRules[1].condition.channels``.
        """
        self._attributes = _check_attributes(attributes)
        self._attribute_set = frozenset(self._attributes)
        self._scoring = tuple(scoring_rules)
        self._shadow = tuple(shadow_rules)
        issues: list[ConfigIssue] = []
        if not self._scoring:
            issues.append(ConfigIssue("scoringRules", NO_SCORING_RULES))
        for section, rules in (("scoringRules", self._scoring), ("shadowRules", self._shadow)):
            for i, rule in enumerate(rules):
                issues.extend(self._check_rule(f"{section}[{i}]", rule))
        if issues:
            raise ConfigError(issues)
        self._predictors = frozenset(
            [p for r in self._scoring for p in r.predictors]
            + [t for r in self._shadow for t in r.targets]
        )
        self._buckets, self._default = _build_index(self._scoring, self._shadow)

    @classmethod
    def from_config(
        cls, routing: Mapping[str, Any], attributes: Iterable[str] = DEFAULT_ATTRIBUTES
    ) -> Router:
        """Load a routing block shaped exactly like the paper's Figure 2.

        ``routing`` is the mapping under the ``routing:`` key (``scoringRules`` required
        and non-empty, ``shadowRules`` optional). ``attributes`` declares the intent
        attributes; condition keys are their plurals. All problems are collected and
        raised as one :class:`~muse.errors.ConfigError`, so an operator fixes a config in
        one round trip; a typo such as ``tennants`` fails loudly instead of silently
        turning a tenant rule into a catch-all.
        """
        attrs = _check_attributes(attributes)
        parser = Parser({condition_key(a): a for a in attrs})
        scoring, shadow = parser.block(routing)
        if parser.issues:
            raise ConfigError(parser.issues)
        return cls(
            [ScoringRule(*fields) for fields in scoring],
            [ShadowRule(*fields) for fields in shadow],
            attrs,
        )

    def to_config(self) -> dict[str, Any]:
        """The routing block in Figure 2's camelCase shape; ``from_config`` of it is equal.

        Condition values are emitted sorted (they are sets: order carries no meaning), and
        ``description`` only when the rule has one. For admin/inspection endpoints.
        """
        return {
            "scoringRules": [
                {
                    **_description(r.description),
                    "condition": _condition_config(r.condition),
                    **_target_config(r.target),
                }
                for r in self._scoring
            ],
            "shadowRules": [
                {
                    **_description(r.description),
                    "condition": _condition_config(r.condition),
                    "targetPredictorNames": list(r.targets),
                }
                for r in self._shadow
            ],
        }

    @property
    def attributes(self) -> tuple[str, ...]:
        """Declared intent attributes (singular), in declaration order."""
        return self._attributes

    @property
    def scoring_rules(self) -> tuple[ScoringRule, ...]:
        """Scoring rules in evaluation order."""
        return self._scoring

    @property
    def shadow_rules(self) -> tuple[ShadowRule, ...]:
        """Shadow rules in config order (the order shadow predictors are listed in)."""
        return self._shadow

    @property
    def splits(self) -> tuple[Split, ...]:
        """The canary splits of the scoring rules, in rule order."""
        return tuple(r.target for r in self._scoring if isinstance(r.target, Split))

    def sticky_keys(self) -> frozenset[str]:
        """Names the splits are sticky by that are not intent attributes: request features
        (a request may carry them although no model uses them)."""
        return frozenset(
            s.sticky_by
            for s in self.splits
            if s.sticky_by is not None and s.sticky_by not in self._attribute_set
        )

    def predictor_names(self) -> frozenset[str]:
        """Every predictor any rule targets, so a config can check each one is defined."""
        return self._predictors

    def route(self, intent: Intent) -> Route:
        """The live and shadow predictors for ``intent`` (singular attribute → string value).

        Raises :class:`~muse.errors.IntentError` if ``intent`` names an undeclared
        attribute or a value is not a string (a number would silently match nothing), and
        :class:`~muse.errors.NoRouteError` if no scoring rule matches.
        """
        # Hot path: validate with C-level set ops, find the tenant's precomputed
        # candidates with one dict lookup, and usually return a prebuilt Route.
        if not self._attribute_set.issuperset(intent):
            raise self._intent_error(intent)
        for value in intent.values():
            if value.__class__ is not str and not isinstance(value, str):
                raise self._intent_error(intent)
        scoring, shadow = self._buckets.get(intent.get(_INDEX_ATTRIBUTE), self._default)
        for checks, route in scoring:
            for attribute, allowed in checks:
                if intent.get(attribute) not in allowed:
                    break
            else:
                return route if shadow is None else _with_shadows(intent, route, shadow)
        raise NoRouteError(intent)

    def __repr__(self) -> str:
        return (
            f"Router({len(self._scoring)} scoring rule(s), {len(self._shadow)} shadow rule(s), "
            f"attributes={self._attributes!r})"
        )

    def _check_rule(self, path: str, rule: object) -> list[ConfigIssue]:
        expected = ScoringRule if path.startswith("scoring") else ShadowRule
        if not isinstance(rule, expected):
            return [ConfigIssue(path, f"expected a {expected.__name__}, got {rule!r}")]
        issues = []
        for key, values in rule.condition.items():
            if key not in self._attribute_set:
                issues.append(
                    ConfigIssue(
                        f"{path}.condition.{condition_key(key)}",
                        f"condition tests undeclared intent attribute {key!r}; declared: "
                        f"{', '.join(self._attributes)}",
                    )
                )
            if not values or not all(isinstance(v, str) and v for v in values):
                issues.append(
                    ConfigIssue(
                        f"{path}.condition.{condition_key(key)}",
                        f"expected a non-empty set of non-empty strings, got {set(values)!r}",
                    )
                )
        targets: tuple[object, ...]
        if isinstance(rule, ScoringRule):
            t = rule.target
            targets = tuple(a.predictor for a in t.arms) if isinstance(t, Split) else (t,)
        else:
            targets = rule.targets
        if not targets or not all(isinstance(t, str) and t for t in targets):
            issues.append(
                ConfigIssue(path, f"expected non-empty predictor name(s), got {targets!r}")
            )
        return issues

    def _intent_error(self, intent: Intent) -> IntentError:
        declared = ", ".join(self._attributes)
        for key, value in intent.items():
            if key not in self._attribute_set:
                hint = suggest(str(key), self._attributes)
                return IntentError(
                    f"intent attribute {key!r} is not declared{hint}; declared: {declared}; "
                    "send only declared attributes, or declare it in the deployment config",
                    attribute=str(key),
                )
            if not isinstance(value, str):
                return IntentError(
                    f"intent attribute {key!r} must be a string, got "
                    f"{type(value).__name__} {value!r}; send it as a string, e.g. {str(value)!r}",
                    attribute=key,
                )
        raise AssertionError("unreachable: intent passed validation")  # pragma: no cover


def _with_shadows(intent: Intent, route: Route, shadow: tuple[_ShadowEntry, ...]) -> Route:
    """``route`` plus the shadow predictors of every matching rule (intent-dependent case)."""
    live = route.live if route.split is None else None
    found: list[str] = []
    for checks, targets in shadow:
        for attribute, allowed in checks:
            if intent.get(attribute) not in allowed:
                break
        else:
            for target in targets:
                if target != live and target not in found:
                    found.append(target)
    return Route(route.live, tuple(found), route.rule, route.split) if found else route


def _build_index(
    scoring: tuple[ScoringRule, ...], shadow: tuple[ShadowRule, ...]
) -> tuple[dict[str | None, _Bucket], _Bucket]:
    """Per-tenant candidate buckets, and the bucket for any tenant no rule names.

    A tenant's scoring candidates are its own rules merged with the tenant-free rules in
    config order, cut after the first candidate with nothing left to check (it always
    matches, so later ones are unreachable). Identical buckets and Routes are shared, so
    memory grows with distinct rule combinations rather than with tenants × rules.
    """
    sc_tenants, sc_checks = _split(r.condition for r in scoring)
    sh_tenants, sh_checks = _split(r.condition for r in shadow)
    sc_by_tenant = _by_tenant(sc_tenants)
    sh_by_tenant = _by_tenant(sh_tenants)
    sc_free = [i for i, t in enumerate(sc_tenants) if t is None]
    sh_free = [j for j, t in enumerate(sh_tenants) if t is None]
    routes: dict[tuple[int, tuple[str, ...]], Route] = {}
    buckets: dict[tuple[tuple[int, ...], tuple[int, ...]], _Bucket] = {}

    def route_for(i: int, shadows: tuple[str, ...]) -> Route:
        key = (i, shadows)
        if key not in routes:
            target = scoring[i].target
            if isinstance(target, Split):  # the scoring pass drops each event's own arm
                routes[key] = Route(
                    target.arms[0].predictor, shadows, scoring[i].description, target
                )
            else:
                routes[key] = Route(
                    target, tuple(s for s in shadows if s != target), scoring[i].description
                )
        return routes[key]

    def bucket(sc_own: Sequence[int], sh_own: Sequence[int]) -> _Bucket:
        sc_idx = tuple(sorted([*sc_own, *sc_free]))
        for n, i in enumerate(sc_idx):
            if not sc_checks[i]:
                sc_idx = sc_idx[: n + 1]
                break
        sh_idx = tuple(sorted([*sh_own, *sh_free]))
        key = (sc_idx, sh_idx)
        if key not in buckets:
            if any(sh_checks[j] for j in sh_idx):
                static: tuple[str, ...] = ()
                dynamic = tuple((sh_checks[j], shadow[j].targets) for j in sh_idx)
            else:
                static = tuple(dict.fromkeys(t for j in sh_idx for t in shadow[j].targets))
                dynamic = None
            entries = tuple((sc_checks[i], route_for(i, static)) for i in sc_idx)
            buckets[key] = (entries, dynamic)
        return buckets[key]

    index: dict[str | None, _Bucket] = {
        tenant: bucket(sc_by_tenant.get(tenant, ()), sh_by_tenant.get(tenant, ()))
        for tenant in sc_by_tenant.keys() | sh_by_tenant.keys()
    }
    return index, bucket((), ())


def _split(conditions: Iterable[Condition]) -> tuple[list[frozenset[str] | None], list[_Checks]]:
    """Per rule: its accepted tenants (None if it does not test tenant) and remaining checks."""
    tenants: list[frozenset[str] | None] = []
    checks: list[_Checks] = []
    for condition in conditions:
        tenants.append(condition.get(_INDEX_ATTRIBUTE))
        checks.append(tuple((k, v) for k, v in condition.items() if k != _INDEX_ATTRIBUTE))
    return tenants, checks


def _by_tenant(tenants: list[frozenset[str] | None]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, accepted in enumerate(tenants):
        for tenant in accepted or ():
            index.setdefault(tenant, []).append(i)
    return index


def _check_attributes(attributes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(attributes, str):
        raise TypeError(
            f"attributes must be an iterable of attribute names, got the string {attributes!r}; "
            f"pass a tuple, e.g. ({attributes!r},)"
        )
    attrs = tuple(attributes)
    issues = []
    for a in attrs:
        if not isinstance(a, str) or not _ATTRIBUTE_RE.fullmatch(a):
            issues.append(
                f"intent attribute name {a!r} is invalid: expected letters, digits and _ "
                "starting with a letter, e.g. 'merchant_category'"
            )
    if len(set(attrs)) != len(attrs) or len({condition_key(str(a)) for a in attrs}) != len(attrs):
        issues.append(f"intent attributes {attrs!r} repeat a name or a plural; declare each once")
    if not attrs:
        issues.append("no intent attributes declared; declare at least one, e.g. ('tenant',)")
    if issues:
        raise ConfigError([ConfigIssue("", m) for m in issues])
    return attrs


def _target_config(target: str | Split) -> dict[str, Any]:
    if isinstance(target, str):
        return {"targetPredictorName": target}
    return {
        "targets": [{"predictor": a.predictor, "weight": a.weight} for a in target.arms],
        **({} if target.sticky_by is None else {"stickyBy": target.sticky_by}),
        "salt": target.salt,
    }


def _description(description: str | None) -> dict[str, str]:
    return {} if description is None else {"description": description}


def _condition_config(condition: Condition) -> dict[str, list[str]]:
    return {condition_key(key): sorted(values) for key, values in condition.items()}
