"""DNS: record checks and RFC 2136 updates signed with TSIG (a later issue)."""
