"""The xpnet command line."""
