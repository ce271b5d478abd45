"""Runs over datasets: reading datasets and the run configs (:mod:`.config`), the row engine (local threads
or Ray actors), case rules and structured names, writing map files, the audit (:mod:`.audit`) and drift
(:mod:`.drift`) folders, summaries and HTML reports."""
