"""Drift between two deployments of one model (:mod:`.run`) and its folder contract (:mod:`.folder`)."""
