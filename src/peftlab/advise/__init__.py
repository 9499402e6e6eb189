"""The advisor: rules from diagnosis signals to a recommendation (see rules.py and docs/DIAGNOSE.md)."""

from peftlab.advise.rules import THRESHOLDS, advisor_check, recommend

__all__ = ["THRESHOLDS", "advisor_check", "recommend"]
