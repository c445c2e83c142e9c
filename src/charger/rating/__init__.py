"""Pure rating core: rate plans and what calls and texts cost under them.

Nothing here does I/O except :func:`load_plans` and :func:`load_plan_versions`, which read
plan files. All money is integer micro-units (see :mod:`charger.money`).
"""

from __future__ import annotations

from charger.rating.cost import CallCharge, billed_seconds, call_charge, sms_charge
from charger.rating.loader import load_plan_versions, load_plans
from charger.rating.model import DIRECTIONS, Increments, RatePlan, VoiceRate
from charger.rating.plans import PlanError, plan_from_dict
from charger.rating.versions import PlanSource, PlanVersions

__all__ = [
    "DIRECTIONS",
    "CallCharge",
    "Increments",
    "PlanError",
    "PlanSource",
    "PlanVersions",
    "RatePlan",
    "VoiceRate",
    "billed_seconds",
    "call_charge",
    "load_plan_versions",
    "load_plans",
    "plan_from_dict",
    "sms_charge",
]
