"""Rocket Relay provider emulator: a real HTTP server speaking OpenAI's and Anthropic's
wire formats, with request recording and scripted failure modes."""

from .app import build_app
from .control import Control, RecordedRequest
from .server import Emulator

__all__ = ["Control", "Emulator", "RecordedRequest", "build_app"]
