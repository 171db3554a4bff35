"""The edit options of the face restorer, defined once and mixed into `FaceChoice`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.warp import is_face_crop

EnhanceMode = Annotated[
    Literal["auto", "on", "off"],
    Field(
        description="Restore the edited face at the frame's resolution (GFPGAN v1.4). auto: on when the face spans "
        "more pixels than the generator renders and the model set has the restorer's weights."
    ),
]
EnhanceStrength = Annotated[
    float, Field(ge=0, le=1, description="Blend of the restored face over the unrestored one (1: fully restored).")
]
Upscale = Annotated[int, Field(ge=1, le=2, description="2: a 256x256 face-crop input comes back at 512x512, restored.")]


class EnhanceChoice(BaseModel):
    """Whether and how much the face restorer works on an edit; default: where it sharpens (`auto`), fully."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enhance: EnhanceMode = "auto"
    enhance_strength: EnhanceStrength = 1.0
    upscale: Upscale = 1

    def check_upscale(self, width: int, height: int) -> None:
        """Upscaling is for face crops only: a whole HD frame doubled would be 4K of mostly unrestored pixels."""
        if self.upscale != 1 and not is_face_crop(width, height):
            raise InputError(
                ErrorCode.BAD_UPSCALE,
                f"upscale {self.upscale} is for 256x256 face-crop inputs; this video is {width}x{height}",
            )
        if self.upscale != 1 and self.enhance == "off":
            raise InputError(ErrorCode.BAD_UPSCALE, "upscale 2 restores the face: it needs enhance auto or on")
