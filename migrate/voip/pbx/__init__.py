"""Reading ministry PBX files into Extension records: FreePBX Bulk Handler CSVs (freepbx.py), Asterisk's
pjsip.conf, sip.conf and voicemail.conf (conf.py for the syntax, asterisk.py for the objects), Kamailio's
subscriber table (kamailio.py), and all of a source's files merged into one extension per number (merge.py).

The entry points are :func:`read_pbx` (one source) and :func:`check_dial_plans` (numbers two sources of one
dial plan both define)."""

from migrate.voip.pbx.merge import SourcePbx, check_dial_plans, read_input, read_pbx

__all__ = ["SourcePbx", "check_dial_plans", "read_input", "read_pbx"]
