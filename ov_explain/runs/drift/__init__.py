"""Drift between two deployments of one model: the run and its options (:mod:`.run`), one image through both
(:mod:`.worker`), the summary (:mod:`.summary`), the gate (:mod:`.gate`) and the folder contract (:mod:`.folder`)."""
