"""The audit: a dataset explained image by image into case folders (:mod:`.run`), the folder contract and
its rows (:mod:`.folder`), the summary and grids (:mod:`.summary`)."""
