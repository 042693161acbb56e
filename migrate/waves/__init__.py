"""Running a wave: one step at a time (the sync passes, run here or queued for workers; provisioning; the SIP
checks; the DNS cut-over and its phone registration; the confirmation; the rollback), each listed in
:mod:`migrate.waves.table` and run by :mod:`migrate.waves.runner` over the items it applies to."""
