"""Where the repository is, whichever tier's folder a test lives in."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
