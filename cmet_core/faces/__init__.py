"""Faces: detect, track, crop to EDTalk's framing, paste the rendered face back."""

from cmet_core.faces.detect import Detection, FaceDetector
from cmet_core.faces.find import FacePlan, TrackedFace, find_faces, find_faces_in, find_many_faces
from cmet_core.faces.framing import NoFaceError, crop_boxes
from cmet_core.faces.geometry import Box, CropBox
from cmet_core.faces.track import FaceSelection, faces_at_start, select_source_frame, track, track_many
from cmet_core.faces.warp import (
    FACE_SIZE,
    crop_face,
    crop_frame,
    feather_mask,
    is_face_crop,
    paste_back,
    paste_frame,
    paste_mask,
)

__all__ = [
    "FACE_SIZE",
    "Box",
    "CropBox",
    "Detection",
    "FaceDetector",
    "FacePlan",
    "FaceSelection",
    "NoFaceError",
    "TrackedFace",
    "crop_boxes",
    "faces_at_start",
    "crop_face",
    "crop_frame",
    "feather_mask",
    "find_faces",
    "find_faces_in",
    "find_many_faces",
    "is_face_crop",
    "paste_back",
    "paste_frame",
    "paste_mask",
    "select_source_frame",
    "track",
    "track_many",
]
