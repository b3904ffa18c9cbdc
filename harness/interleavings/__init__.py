"""Scripted interleavings: step scripts run by actors, traces, replay and search."""
