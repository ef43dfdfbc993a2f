"""Hypothesis profiles for the pure core: the default stays fast; `--hypothesis-profile=thorough` digs deeper."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("thorough", max_examples=5000, deadline=None)
