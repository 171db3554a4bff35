"""Verification against the conformance kits: the fill rule, the golden groups and their runner."""
