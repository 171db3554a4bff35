"""Emotions as emotion2vec+ semantic vectors: build, store, scale and blend them.

A semantic vector is mean(target embeddings) - mean(neutral embeddings) (SPEC §6), one 1024-d
float32 vector that the C-MET connector takes as its speech condition. The built-in library ships
14 of them as JSON inside the package; users can add their own to an `EmotionLibrary` and save it in
the same format.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from cmet_core.errors import ErrorCode, InputError

EMBEDDING_MODEL = "iic/emotion2vec_plus_large"
EMBEDDING_DIM: Final = 1024
LIBRARY_FORMAT: Final = "cmet-emotions-v1"
NEUTRAL = "neutral"
BASIC_EMOTIONS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
EXTENDED_EMOTIONS: tuple[str, ...] = ("charismatic", "desirous", "empathetic", "envious", "romantic", "sarcastic")
BASIC_SET = "MEAD"
EXTENDED_SET = "gemini"
MAX_INTENSITY = 2.0
"""Largest overall intensity accepted: far past 1 the connector sees vectors unlike any it was trained on."""

EMOTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
"""What an emotion may be called; used with `fullmatch` (`match` lets a trailing newline through)."""


class EmotionKind(StrEnum):
    BASIC = "basic"
    EXTENDED = "extended"
    CUSTOM = "custom"


class UnknownEmotionError(KeyError, ValueError):
    """A name the library does not hold; the message lists the names it does hold."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown emotion {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------
# vectors


def _as_embedding(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.size != EMBEDDING_DIM or arr.squeeze().ndim != 1:
        raise ValueError(f"{what}: expected one {EMBEDDING_DIM}-d embedding, got shape {arr.shape}")
    arr = arr.reshape(EMBEDDING_DIM).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: embedding has non-finite values")
    return arr


def mean_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Float64 mean of 1024-d embeddings, exactly rounded per dimension.

    `math.fsum` makes the sum independent of the order of the clips, so a vector depends only on
    which clips were used, bit for bit.
    """
    if len(embeddings) == 0:
        raise ValueError("no embeddings to average")
    rows = np.stack([_as_embedding(e, f"embedding {i}") for i, e in enumerate(embeddings)])
    return np.array([math.fsum(col) for col in rows.T.tolist()], dtype=np.float64) / len(rows)


def difference_of_means(target: Sequence[np.ndarray], neutral: Sequence[np.ndarray]) -> np.ndarray:
    """mean(target) - mean(neutral) as float32 (1024,), computed in float64 (SPEC §6, no normalisation)."""
    difference: np.ndarray = (mean_embedding(target) - mean_embedding(neutral)).astype(np.float32)
    return difference


def vector_sha256(vector: np.ndarray) -> str:
    """SHA-256 of the little-endian float32 bytes: the digest stored next to every vector."""
    return hashlib.sha256(np.ascontiguousarray(vector, dtype="<f4").tobytes()).hexdigest()


def _encode(vector: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype=dtype).tobytes()).decode("ascii")


def _decode(text: str, dtype: str) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.shape != (EMBEDDING_DIM,):
        raise ValueError(f"expected {EMBEDDING_DIM} values, got {arr.size}")
    return arr.astype(dtype[1:]).copy()


def scale(vec: np.ndarray, intensity: float) -> np.ndarray:
    """`vec` times `intensity` (0 = neutral, 1 = as recorded), float32.

    Negative intensities are refused: minus an emotion is not another emotion, just a vector the
    connector never saw.
    """
    if not math.isfinite(intensity) or not 0.0 <= intensity <= MAX_INTENSITY:
        raise ValueError(f"intensity must be between 0 and {MAX_INTENSITY}, got {intensity}")
    return (_as_embedding(vec, "vector") * float(intensity)).astype(np.float32)


def blend(weights: Mapping[str, float], library: EmotionLibrary) -> np.ndarray:
    """Weighted sum of library vectors, float32; weights are used as given, never normalised.

    A weight is the intensity of that emotion's share, so weights summing to 1
    (`happy=0.6,surprised=0.4`) are a full-strength mix and `happy=0.5` equals `scale(happy, 0.5)`.
    Normalising instead would make `happy=0.3` full-strength happy and hide typos such as
    `happy=6,surprised=4`. The total must be in (0, MAX_INTENSITY]; negative weights are refused.
    """
    if not weights:
        raise ValueError("empty blend: give at least one emotion, e.g. 'happy=0.6,surprised=0.4'")
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight}")
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError("blend weights sum to 0: give at least one positive weight")
    if total > MAX_INTENSITY:
        raise ValueError(f"blend weights sum to {total:g}, more than the maximum intensity {MAX_INTENSITY}")
    vectors = {name: library.vector(name) for name in weights}
    acc = np.zeros(EMBEDDING_DIM, dtype=np.float64)
    for name, weight in weights.items():
        acc += float(weight) * vectors[name].astype(np.float64)
    return acc.astype(np.float32)


def parse_blend(text: str) -> dict[str, float]:
    """Parse `"happy=0.6,surprised=0.4"` (a bare `happy` means weight 1) into {name: weight}.

    Names are lower-cased; duplicates, missing or non-numeric weights and negative weights raise
    ValueError naming the offending item.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not any(items):
        raise ValueError("empty blend: expected e.g. 'happy=0.6,surprised=0.4'")
    out: dict[str, float] = {}
    for item in items:
        if not item:
            raise ValueError(f"empty item in blend {text!r}")
        name, sep, value = (part.strip() for part in item.partition("="))
        name = name.lower()
        if not name:
            raise ValueError(f"missing emotion name in {item!r}")
        if sep and not value:
            raise ValueError(f"missing weight in {item!r}")
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"weight in {item!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight in {item!r} must be a finite number >= 0")
        if name in out:
            raise ValueError(f"emotion {name!r} appears twice in {text!r}")
        out[name] = weight
    return out


def resolve(spec: str, library: EmotionLibrary, intensity: float = 1.0) -> np.ndarray:
    """The vector for a user's emotion string (`happy` or `happy=0.6,surprised=0.4`) at an intensity.

    The overall intensity (weights sum x intensity) is bounded like a blend's, not each factor alone.
    """
    if not math.isfinite(intensity) or not 0.0 <= intensity <= MAX_INTENSITY:
        raise ValueError(f"intensity must be between 0 and {MAX_INTENSITY}, got {intensity}")
    weights = parse_blend(spec)
    overall = math.fsum(weights.values()) * intensity
    if overall > MAX_INTENSITY:
        raise ValueError(f"overall intensity {overall:g} (weights x intensity) is more than {MAX_INTENSITY}")
    return scale(blend(weights, library), intensity)


# ---------------------------------------------------------------------------------------------
# feature folders


def list_features(folder: Path) -> list[Path]:
    """The `*.npy` files of a folder, sorted by name (never `os.listdir` order, SPEC §6)."""
    if not folder.is_dir():
        raise ValueError(f"feature folder not found: {folder}")
    files = sorted(folder.glob("*.npy"), key=lambda p: p.name)
    if not files:
        raise ValueError(f"no *.npy features in {folder}")
    return files


def select_files(files: Sequence[Path], n: int | None = None, seed: int | random.Random = 0) -> list[Path]:
    """All files (n=None), or `Random(seed).sample` of n from the sorted list.

    `seed` may be a shared `random.Random`, so several draws can reproduce the official code's one
    global RNG.
    """
    ordered = sorted(files, key=lambda p: p.name)
    if n is None:
        return ordered
    if not 1 <= n <= len(ordered):
        raise ValueError(f"cannot draw {n} of {len(ordered)} feature files")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return rng.sample(ordered, n)


def load_features(files: Sequence[Path]) -> list[np.ndarray]:
    """Load one embedding per file, as float32 (1024,), naming the file on any error."""
    out = []
    for path in files:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read features {path}: {exc}") from None
        out.append(_as_embedding(arr, str(path)).astype(np.float32))
    return out


def load_folder(
    folder: Path, n: int | None = None, seed: int | random.Random = 0
) -> tuple[list[Path], list[np.ndarray]]:
    """The selected files of a feature folder and their embeddings."""
    files = select_files(list_features(folder), n, seed)
    return files, load_features(files)


@dataclass(frozen=True)
class SampledVector:
    """A vector from drawn clips, with the file names drawn, so the draw can be audited."""

    vector: np.ndarray
    neutral_files: list[str]
    target_files: list[str]


def official_vector(neutral_dir: Path, target_dir: Path, n: int = 10, seed: int = 42) -> SampledVector:
    """The published inference.py draw on sorted listings: one RNG seeded 42, N=10 neutral then N=10 target.

    This reproduces the kit golden `real_e2v`; the library itself uses every clip instead.
    """
    rng = random.Random(seed)
    neutral_files, neutral = load_folder(neutral_dir, n, rng)
    target_files, target = load_folder(target_dir, n, rng)
    return SampledVector(
        difference_of_means(target, neutral), [p.name for p in neutral_files], [p.name for p in target_files]
    )


# ---------------------------------------------------------------------------------------------
# library schema


def _check_name(name: str) -> str:
    if not EMOTION_NAME.fullmatch(name):
        raise ValueError(
            f"emotion name {name!r} must be lower-case letters, digits, '_' or '-', starting with a letter"
        )
    return name


class Provenance(BaseModel):
    """Where a vector came from, enough to rebuild it."""

    source_set: str = Field(description="Feature set, e.g. 'MEAD', 'gemini', or a user label.")
    files: list[str] = Field(description="Feature files used, relative to the set's root.")
    n: int = Field(ge=1)
    embedding_model: str = EMBEDDING_MODEL
    neutral_sha256: str = Field(description="Digest of the neutral reference mean it was taken against.")
    created_at: datetime

    @model_validator(mode="after")
    def _n_matches_files(self) -> Provenance:
        if self.files and len(self.files) != self.n:
            raise ValueError(f"n={self.n} but {len(self.files)} files listed")
        return self


class EmotionEntry(BaseModel):
    name: str
    kind: EmotionKind
    vector_b64: str = Field(description="base64 of the little-endian float32 vector.")
    sha256: str
    provenance: Provenance

    _vector: np.ndarray = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        return _check_name(name)

    @model_validator(mode="after")
    def _verify(self) -> EmotionEntry:
        vec = _decode(self.vector_b64, "<f4")
        if not np.isfinite(vec).all():
            raise ValueError(f"emotion {self.name!r}: vector has non-finite values")
        if vector_sha256(vec) != self.sha256:
            raise ValueError(f"emotion {self.name!r}: vector digest mismatch (file corrupted or edited)")
        vec.setflags(write=False)
        self._vector = vec
        return self

    @classmethod
    def create(cls, name: str, kind: EmotionKind, vector: np.ndarray, provenance: Provenance) -> EmotionEntry:
        vec = np.asarray(vector, dtype=np.float32).reshape(EMBEDDING_DIM)
        return cls(
            name=name, kind=kind, vector_b64=_encode(vec, "<f4"), sha256=vector_sha256(vec), provenance=provenance
        )

    @property
    def vector(self) -> np.ndarray:
        """The float32 (1024,) vector, read-only."""
        return self._vector

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self._vector.astype(np.float64)))


class NeutralReference(BaseModel):
    """The neutral mean every vector of a library is taken against.

    Stored in float64 so a custom emotion built later from the same clips equals a fresh build bit
    for bit; without it, users' clips could not be turned into vectors without the raw features.
    """

    source_set: str
    files: list[str]
    n: int = Field(ge=1)
    embedding_model: str = EMBEDDING_MODEL
    mean_b64: str = Field(description="base64 of the little-endian float64 mean embedding.")
    sha256: str = Field(description="SHA-256 of the float64 mean's bytes.")

    _mean: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _verify(self) -> NeutralReference:
        mean = _decode(self.mean_b64, "<f8")
        if hashlib.sha256(mean.astype("<f8").tobytes()).hexdigest() != self.sha256:
            raise ValueError("neutral reference: mean digest mismatch (file corrupted or edited)")
        if self.files and len(self.files) != self.n:
            raise ValueError(f"neutral reference: n={self.n} but {len(self.files)} files listed")
        mean.setflags(write=False)
        self._mean = mean
        return self

    @classmethod
    def create(cls, source_set: str, files: list[str], mean: np.ndarray) -> NeutralReference:
        mean = np.asarray(mean, dtype=np.float64).reshape(EMBEDDING_DIM)
        digest = hashlib.sha256(mean.astype("<f8").tobytes()).hexdigest()
        return cls(source_set=source_set, files=files, n=len(files), mean_b64=_encode(mean, "<f8"), sha256=digest)

    @property
    def mean(self) -> np.ndarray:
        return self._mean


class EmotionLibrary(BaseModel):
    """Named emotion vectors sharing one neutral reference; built-in and custom use the same format."""

    format: Literal["cmet-emotions-v1"] = LIBRARY_FORMAT
    embedding_model: str = EMBEDDING_MODEL
    dim: Literal[1024] = EMBEDDING_DIM
    neutral: NeutralReference
    emotions: list[EmotionEntry] = Field(default_factory=list)

    _index: dict[str, EmotionEntry] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> EmotionLibrary:
        index: dict[str, EmotionEntry] = {}
        for entry in self.emotions:
            if entry.name in index:
                raise ValueError(f"emotion {entry.name!r} is listed twice")
            self._check_entry(entry)
            index[entry.name] = entry
        self._index = index
        return self

    def _check_entry(self, entry: EmotionEntry) -> None:
        if entry.provenance.embedding_model != self.embedding_model:
            raise ValueError(
                f"emotion {entry.name!r} uses {entry.provenance.embedding_model}, library uses {self.embedding_model}"
            )
        if entry.provenance.neutral_sha256 != self.neutral.sha256:
            raise ValueError(f"emotion {entry.name!r} was taken against another neutral reference")

    def names(self) -> list[str]:
        return [e.name for e in self.emotions]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self.emotions)

    def get(self, name: str) -> EmotionEntry:
        try:
            return self._index[name]
        except KeyError:
            raise UnknownEmotionError(name, self._index) from None

    def vector(self, name: str) -> np.ndarray:
        return self.get(name).vector

    def add(self, entry: EmotionEntry, replace: bool = False) -> None:
        """Add an entry; an existing name is only overwritten with `replace=True`."""
        self._check_entry(entry)
        if entry.name in self._index:
            if not replace:
                raise ValueError(f"emotion {entry.name!r} already exists")
            self.emotions = [entry if e.name == entry.name else e for e in self.emotions]
        else:
            self.emotions.append(entry)
        self._index[entry.name] = entry

    def add_from_embeddings(
        self,
        name: str,
        embeddings: Sequence[np.ndarray],
        files: Sequence[str],
        source_set: str = "custom",
        kind: EmotionKind = EmotionKind.CUSTOM,
        created_at: datetime | None = None,
        replace: bool = False,
    ) -> EmotionEntry:
        """Register an emotion from the emotion2vec+ embeddings of its clips (e.g. a user's speech)."""
        _check_name(name)
        if len(files) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(files)} file names")
        vec = (mean_embedding(embeddings) - self.neutral.mean).astype(np.float32)
        prov = Provenance(
            source_set=source_set,
            files=list(files),
            n=len(embeddings),
            embedding_model=self.embedding_model,
            neutral_sha256=self.neutral.sha256,
            created_at=created_at or datetime.now(UTC),
        )
        entry = EmotionEntry.create(name, kind, vec, prov)
        self.add(entry, replace=replace)
        return entry

    def remove(self, name: str) -> None:
        self.get(name)
        self.emotions = [e for e in self.emotions if e.name != name]
        del self._index[name]

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename), so a reader never sees half a library."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> EmotionLibrary:
        """Read and verify every digest; a user's bad file is an InputError (code `bad_library`) with the reason."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                ErrorCode.BAD_LIBRARY, f"cannot read emotion library {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(_describe(err) for err in exc.errors(include_url=False))
            raise InputError(ErrorCode.BAD_LIBRARY, f"invalid emotion library {path}: {problems}") from None


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    msg = error["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


# ---------------------------------------------------------------------------------------------
# built-in library


BUILTIN_RESOURCE = ("data", "emotions_builtin.json")


def builtin_library_path() -> Path:
    return Path(str(resources.files("cmet_core").joinpath(*BUILTIN_RESOURCE)))


def build_library(e2v_root: Path, created_at: datetime | None = None) -> EmotionLibrary:
    """Build the 14 built-in emotions from every clip of `e2v_root/<set>/<emotion>/*.npy`.

    Basic emotions come from MEAD, extended ones from gemini, sarcastic included: the 12 MELD
    sarcastic clips are left out because they are dominated by their recording channel (TV audio,
    laugh track; they are closer to each other than any MEAD emotion's clips are) and mixing two
    sets would average two different directions. Using every clip, not the official N=10, keeps the
    vectors stable. Neutral reference = all MEAD neutral clips, so neutral's vector is exactly zero.
    """
    stamp = created_at or datetime.now(UTC)
    neutral_files, neutral = load_folder(e2v_root / BASIC_SET / NEUTRAL)
    reference = NeutralReference.create(
        BASIC_SET, [f"{NEUTRAL}/{p.name}" for p in neutral_files], mean_embedding(neutral)
    )
    library = EmotionLibrary(neutral=reference)
    plan = [(n, BASIC_SET, EmotionKind.BASIC) for n in BASIC_EMOTIONS]
    plan += [(n, EXTENDED_SET, EmotionKind.EXTENDED) for n in EXTENDED_EMOTIONS]
    for name, source_set, kind in plan:
        files, feats = (neutral_files, neutral) if name == NEUTRAL else load_folder(e2v_root / source_set / name)
        library.add_from_embeddings(name, feats, [f"{name}/{p.name}" for p in files], source_set, kind, stamp)
    return library


def load_builtin_library() -> EmotionLibrary:
    """The shipped library, digests verified; a fresh object each call, so callers may add to it."""
    library = EmotionLibrary.load(builtin_library_path())
    expected = set(BASIC_EMOTIONS) | set(EXTENDED_EMOTIONS)
    if set(library.names()) != expected:
        raise ValueError(f"built-in emotion library holds {sorted(library.names())}, expected {sorted(expected)}")
    return library
