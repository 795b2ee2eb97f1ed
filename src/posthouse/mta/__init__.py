"""The mail transfer agent: addresses, aliases, queue, routing and delivery agents."""
