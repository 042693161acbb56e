"""DNS: ministry domain record checks, change sets, and RFC 2136 updates signed with TSIG."""
