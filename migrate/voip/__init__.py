"""VOIP: PBX inventory readers and the SIP probe (a later issue)."""
