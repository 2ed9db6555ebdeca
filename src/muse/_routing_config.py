"""Validation of the paper's Figure 2 routing block (§2.5.1), for :mod:`muse.routing`.

Kept apart from the router so the request-path module stays small. Reads the raw mapping
(as ``yaml.safe_load`` gives it) and returns plain rule fields plus *every* issue found,
with paths relative to the routing block (``scoringRules[1].condition.tennants``), so an
operator fixes a config in one round trip. Private: use ``Router.from_config``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from muse.errors import ConfigIssue
from muse.splits import Arm, Split, default_salt

BLOCK_KEYS = ("scoringRules", "shadowRules")
SCORING_KEYS = ("description", "condition", "targetPredictorName", "targets", "stickyBy", "salt")
SPLIT_KEYS = ("targets", "stickyBy", "salt")
ARM_KEYS = ("predictor", "weight")
SHADOW_KEYS = ("description", "condition", "targetPredictorNames")

#: (description, condition keyed by singular attribute, target) of a scoring rule; the
#: target is one predictor's name, or a :class:`~muse.splits.Split` between several.
ScoringFields: TypeAlias = tuple[str | None, dict[str, frozenset[str]], str | Split]
#: (description, condition keyed by singular attribute, targets) of a shadow rule.
ShadowFields: TypeAlias = tuple[str | None, dict[str, frozenset[str]], tuple[str, ...]]


def suggest(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``options``, or ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


NO_SCORING_RULES = (
    "expected a non-empty list of scoring rules: every intent needs a live predictor; "
    "add at least a catch-all, e.g. {condition: {}, targetPredictorName: global-predictor}"
)


class Parser:
    """Turns a raw routing block into rule fields, collecting every issue on the way.

    ``keys`` maps each valid condition key (plural) to its intent attribute (singular).
    """

    def __init__(self, keys: Mapping[str, str]) -> None:
        self.issues: list[ConfigIssue] = []
        self.keys = dict(keys)

    def issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def block(self, routing: object) -> tuple[list[ScoringFields], list[ShadowFields]]:
        if not isinstance(routing, Mapping):
            self.issue(
                "",
                f"expected the routing block to be a mapping with scoringRules and optional "
                f"shadowRules (paper Figure 2), got {type(routing).__name__} {routing!r}",
            )
            return [], []
        self.unknown_keys("", routing, BLOCK_KEYS)
        scoring: list[ScoringFields] = []
        shadow: list[ShadowFields] = []
        if routing.get("scoringRules") is None:
            self.issue("scoringRules", "missing; " + NO_SCORING_RULES)
        for path, raw in self.rule_list("scoringRules", routing.get("scoringRules"), True):
            rule = self.scoring_rule(path, raw)
            if rule is not None:
                scoring.append(rule)
        for path, raw in self.rule_list("shadowRules", routing.get("shadowRules"), False):
            shadow_rule = self.shadow_rule(path, raw)
            if shadow_rule is not None:
                shadow.append(shadow_rule)
        return scoring, shadow

    def rule_list(
        self, path: str, raw: object, required: bool
    ) -> list[tuple[str, Mapping[str, Any]]]:
        if raw is None:
            return []  # absent: fine for shadowRules; block() reports missing scoringRules
        if not isinstance(raw, list | tuple):
            self.issue(path, f"expected a list of rules, got {type(raw).__name__} {raw!r}")
            return []
        if required and not raw:
            self.issue(path, NO_SCORING_RULES)
        rules = []
        for i, rule in enumerate(raw):
            if isinstance(rule, Mapping):
                rules.append((f"{path}[{i}]", rule))
            else:
                self.issue(
                    f"{path}[{i}]",
                    f"expected a rule mapping with condition and a target, got "
                    f"{type(rule).__name__} {rule!r}",
                )
        return rules

    def scoring_rule(self, path: str, raw: Mapping[str, Any]) -> ScoringFields | None:
        hint = (
            "a scoring rule picks one live predictor per event: use targetPredictorName "
            "(singular), or share traffic by weight with targets: [{predictor, weight}, ...]; "
            "mirror to more predictors with a shadow rule"
        )
        self.unknown_keys(path, raw, SCORING_KEYS, {"targetPredictorNames": hint})
        description = self.description(path, raw)
        condition = self.condition(path, raw)
        target: str | Split | None = None
        if "targets" in raw:
            if "targetPredictorName" in raw:
                self.issue(
                    f"{path}.targets",
                    "a scoring rule has either one live predictor (targetPredictorName) or a "
                    "split between several (targets), not both; remove one",
                )
            else:
                target = self.split(path, raw)
        else:
            for key in ("stickyBy", "salt"):
                if key in raw:
                    self.issue(
                        f"{path}.{key}",
                        f"{key} belongs to a split: it needs targets: [{{predictor, weight}}, "
                        "...] in the same rule",
                    )
            if "targetPredictorName" in raw or "targetPredictorNames" not in raw:
                target = self.name(f"{path}.targetPredictorName", raw.get("targetPredictorName"))
        if condition is None or target is None:
            return None
        return description, condition, target

    def split(self, path: str, raw: Mapping[str, Any]) -> Split | None:
        """``targets: [{predictor, weight}, ...]`` with optional ``stickyBy`` and ``salt``."""
        where = f"{path}.targets"
        value = raw["targets"]
        example = "targets: [{predictor: bank1-v1, weight: 90}, {predictor: bank1-v2, weight: 10}]"
        if not isinstance(value, list | tuple) or len(value) < 2:
            got = f"{type(value).__name__} {value!r}"
            self.issue(where, f"expected a list of at least two arms, e.g. {example}; got {got}")
            return None
        arms: list[Arm] = []
        ok = True
        for i, item in enumerate(value):
            arm = self.arm(f"{where}[{i}]", item)
            if arm is None:
                ok = False
            else:
                arms.append(arm)
        names = [a.predictor for a in arms]
        for i, name in enumerate(names):
            if name in names[:i]:
                ok = False
                self.issue(
                    f"{where}[{i}].predictor",
                    f"predictor {name!r} is already an arm of this split; list each once",
                )
        if ok and sum(a.weight for a in arms) <= 0:
            ok = False
            self.issue(where, "every weight is 0: give at least one arm a positive weight")
        sticky = raw.get("stickyBy")
        if sticky is not None and (not isinstance(sticky, str) or not sticky):
            ok = False
            self.issue(
                f"{path}.stickyBy",
                "expected the name of an intent attribute or a request feature that identifies "
                f"the entity (e.g. card_id), got {type(sticky).__name__} {sticky!r}",
            )
        salt = raw.get("salt")
        if salt is not None and not isinstance(salt, str):
            ok = False
            self.issue(
                f"{path}.salt",
                f"expected a string (any text naming the experiment), got "
                f"{type(salt).__name__} {salt!r}; quote it",
            )
        if not ok:
            return None
        return Split(tuple(arms), sticky, default_salt(arms) if salt is None else salt)

    def arm(self, path: str, item: object) -> Arm | None:
        if not isinstance(item, Mapping):
            self.issue(
                path,
                f"expected an arm {{predictor: NAME, weight: NUMBER}}, got "
                f"{type(item).__name__} {item!r}",
            )
            return None
        self.unknown_keys(path, item, ARM_KEYS)
        name = self.name(f"{path}.predictor", item.get("predictor"))
        weight = item.get("weight")
        if weight is None:
            self.issue(f"{path}.weight", "missing; expected a number >= 0 (shares are w / total)")
            return None
        try:  # an integer beyond float range is not a weight either
            finite = isinstance(weight, int | float) and 0 <= float(weight) < 1e300
        except OverflowError:
            finite = False
        if isinstance(weight, bool) or not finite:
            self.issue(
                f"{path}.weight",
                f"expected a finite number >= 0, got {type(weight).__name__} {weight!r}",
            )
            return None
        if name is None:
            return None
        return Arm(name, float(weight))

    def shadow_rule(self, path: str, raw: Mapping[str, Any]) -> ShadowFields | None:
        hint = "a shadow rule mirrors to a list of predictors: use targetPredictorNames: [...]"
        self.unknown_keys(path, raw, SHADOW_KEYS, {"targetPredictorName": hint})
        description = self.description(path, raw)
        condition = self.condition(path, raw)
        targets = None
        if "targetPredictorNames" in raw or "targetPredictorName" not in raw:
            targets = self.names(f"{path}.targetPredictorNames", raw.get("targetPredictorNames"))
        if condition is None or targets is None:
            return None
        return description, condition, targets

    def description(self, path: str, raw: Mapping[str, Any]) -> str | None:
        value = raw.get("description")
        if value is not None and not isinstance(value, str):
            self.issue(
                f"{path}.description",
                f"expected a string, got {type(value).__name__} {value!r}; quote it",
            )
            return None
        return value

    def condition(self, path: str, raw: Mapping[str, Any]) -> dict[str, frozenset[str]] | None:
        path = f"{path}.condition"
        if "condition" not in raw or raw["condition"] is None:
            self.issue(
                path, "missing; every rule needs a condition (use condition: {} to match all)"
            )
            return None
        value = raw["condition"]
        if not isinstance(value, Mapping):
            self.issue(
                path,
                f"expected a mapping like {{tenants: [bank1]}} (or {{}} to match all), got "
                f"{type(value).__name__} {value!r}",
            )
            return None
        condition: dict[str, frozenset[str]] = {}
        ok = True
        for key, values in value.items():
            attribute = self.keys.get(key) if isinstance(key, str) else None
            if attribute is None:
                ok = False
                self.issue(f"{path}.{key}", self.unknown_condition_key(key))
            names = self.names(f"{path}.{key}", values)
            if names is None:
                ok = False
            elif attribute is not None:
                condition[attribute] = frozenset(names)
        return condition if ok else None

    def unknown_condition_key(self, key: object) -> str:
        return (
            f"unknown condition key {key!r}{suggest(str(key), self.keys)}: it names no "
            "declared intent attribute, so the rule would not test what was meant; valid keys "
            f"(plurals of the attributes): {', '.join(self.keys)}; declare extra attributes "
            "to test more"
        )

    def name(self, path: str, value: object) -> str | None:
        if value is None:
            self.issue(path, "missing; expected the name of the predictor to serve, a string")
        elif isinstance(value, list | tuple):
            self.issue(
                path,
                f"expected one predictor name (string), got the list {value!r}; "
                "mirror to more predictors with a shadow rule's targetPredictorNames",
            )
        elif not isinstance(value, str) or not value:
            self.issue(
                path, f"expected a non-empty predictor name, got {type(value).__name__} {value!r}"
            )
        else:
            return value
        return None

    def names(self, path: str, value: object) -> tuple[str, ...] | None:
        """A non-empty list of non-empty strings, de-duplicated in order."""
        key = path.rsplit(".", 1)[-1]
        if value is None:
            self.issue(path, f"missing; expected a non-empty list of strings, e.g. {key}: [x]")
            return None
        if isinstance(value, str):
            self.issue(
                path,
                f"expected a list, e.g. {key}: [{value}]; got the bare string {value!r}",
            )
            return None
        if not isinstance(value, list | tuple):
            self.issue(
                path,
                f"expected a non-empty list of strings, got {type(value).__name__} {value!r}",
            )
            return None
        if not value:
            fix = (
                "name at least one predictor, or remove the rule"
                if key == "targetPredictorNames"
                else "an empty list matches nothing; list at least one value, or remove the "
                "key to not test it"
            )
            self.issue(path, f"expected a non-empty list, got []; {fix}")
            return None
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                ok = False
                fix = "" if isinstance(item, str) else "; quote values YAML reads as non-strings"
                self.issue(
                    f"{path}[{i}]",
                    f"expected a non-empty string, got {type(item).__name__} {item!r}{fix}",
                )
        return tuple(dict.fromkeys(value)) if ok else None

    def unknown_keys(
        self,
        path: str,
        raw: Mapping[Any, Any],
        allowed: tuple[str, ...],
        hints: Mapping[str, str] | None = None,
    ) -> None:
        for key in raw:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else str(key)
            if hints and key in hints:
                self.issue(where, f"unknown key {key!r}: {hints[key]}")
                continue
            self.issue(
                where,
                f"unknown key {key!r}{suggest(str(key), allowed)}; "
                f"allowed keys: {', '.join(allowed)}",
            )
