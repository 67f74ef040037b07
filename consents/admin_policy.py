"""Workbench screens for policy versions. Skeleton: the policy-versions work fills it in."""
