"""Cluster topology files and their schema."""
