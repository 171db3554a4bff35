"""Model kinds are spelled once (`cmet_core.modelsets.manifests`); the batch policies and the fill rules name them."""

from __future__ import annotations

from typing import get_args

from cmet_core.backbones.registry import backbone_names
from cmet_core.modelsets.manifests import MEMBER_KINDS, OPTIONAL_KINDS, SHARED_KINDS
from cmet_jobs.settings import BatchedModel


def test_the_member_kinds_split_into_shared_and_optional_without_overlap() -> None:
    parts = [*SHARED_KINDS, *OPTIONAL_KINDS]
    assert sorted(parts) == sorted(MEMBER_KINDS) and len(set(parts)) == len(parts)


def test_each_batch_policy_is_a_member_kind_or_a_backbone_forward() -> None:
    forwards = {f"{b}_{part}" for b in backbone_names() for part in ("encoder", "renderer")}
    assert set(get_args(BatchedModel)) - forwards <= set(MEMBER_KINDS) - {"connector"}


def test_every_fill_rule_is_for_a_member_kind() -> None:
    from cmet_core.verify.fill import RULES

    assert set(RULES) <= set(MEMBER_KINDS)
