"""Mail: IMAP and EWS sources, the central IMAP host, folder mapping, inventory, sync and verification."""
