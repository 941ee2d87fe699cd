"""Pure array functions from phase to susceptibility: no files, no printing, no global state.

Stages, each a folder or module with one function per method and a registry of names:
phase preparation, brain mask, unwrapping and echo fitting (total field), background field
removal (local field), dipole inversion (susceptibility) and referencing.
"""
