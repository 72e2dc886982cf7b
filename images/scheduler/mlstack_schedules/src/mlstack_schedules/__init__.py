"""mlstack's scheduled jobs on the Prefect engine: the schedule file (:mod:`.spec`), the flow
each job runs as (:mod:`.flow`), the engine's side (:mod:`.engine`), make's commands
(``python -m mlstack_schedules``)."""
