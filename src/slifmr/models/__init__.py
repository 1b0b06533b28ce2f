"""Recommenders: one model per file, sharing the scoring/ranking base in base.py."""
