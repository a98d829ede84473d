"""Presentation only: tables and files made from results, no arithmetic on losses."""
