"""Configuration schema (the chapter worksheet and imapd.conf names) and loading."""
