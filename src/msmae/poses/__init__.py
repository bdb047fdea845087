"""Pose sequences: the type, readers and writers, normalisation, augmentation, synthetic signer."""
from msmae.poses.sequence import PoseDataError, PoseSequence

__all__ = ["PoseDataError", "PoseSequence"]
