"""Command-line tools, one thin module per tool."""
