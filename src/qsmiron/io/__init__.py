"""Reading and writing: NIfTI with JSON sidecars, BIDS discovery, DICOM conversion, tables."""
