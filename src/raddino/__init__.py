"""raddino: RAD-DINO for your own chest X-rays.

Prepare DICOMs into training images, continue DINOv2 pre-training, export encoders, extract embeddings
with the release's preprocessing, and evaluate encoders with the paper's protocols.
"""

__version__ = "0.1.0"
