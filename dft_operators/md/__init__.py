"""Molecular dynamics: the integrators and their driver (:mod:`.integrators`) and the recorded
frames (:mod:`.trajectory`)."""
