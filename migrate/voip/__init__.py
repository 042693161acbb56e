"""VOIP: the PBX readers, the hosted platform's provisioning files, and the SIP client and checks: a library
beside mailbox/ and dns/, with no wave logic (the wave's phone steps are in migrate.waves)."""
