"""Running a wave: a sequence of steps (the sync passes, the DNS switch, later the SIP checks), each with the
items it applies to, its pre-flight, its run, and the lifecycle state it moves items to."""
