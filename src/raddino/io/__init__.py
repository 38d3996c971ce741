"""Reading chest X-rays (PNG, JPEG, TIFF, DICOM) into one float image, writing PNGs, manifests."""
