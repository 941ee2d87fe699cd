"""Normalisation to the template with ANTs and warping labels into subject space."""
