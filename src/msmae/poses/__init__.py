"""Pose sequences: the type, readers and writers, normalisation, augmentation, synthetic signer."""
from msmae.poses.sequence import PoseDataError, PoseSequence
from msmae.poses.readers import (SUPPORTED_SUFFIXES, find_pose_files, holistic_to_sequence, read_npz,
                                 read_sequence)
from msmae.poses.writers import write_holistic_pose, write_npz
from msmae.poses.normalize import normalize
from msmae.poses.augment import AugmentConfig, Augmenter

__all__ = ["PoseDataError", "PoseSequence", "SUPPORTED_SUFFIXES", "find_pose_files", "holistic_to_sequence",
           "read_npz", "read_sequence", "write_holistic_pose", "write_npz", "normalize", "AugmentConfig",
           "Augmenter"]
