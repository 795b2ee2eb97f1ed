"""Users, service types, password hashes and credential checks."""
