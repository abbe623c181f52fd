"""rung.sci — Selected CI rung: CIPSI with bit-string determinants, EN-PT2, Davidson-Liu."""

__version__ = "0.1.0"
