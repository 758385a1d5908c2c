"""The `clob` command line."""
