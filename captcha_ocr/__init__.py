"""captcha-ocr as a Python library (``pip install .``, no PyTorch needed).

    from captcha_ocr import Reader
    reader = Reader()                              # the default model
    reading = reader.read("captcha.png")           # bytes, a path, a PIL image or a numpy array
    print(reading.text, reading.answer, reading.confidence)
    readings = reader.read([b1, b2], allowed="digits")   # a batch; a character set per call

    from captcha_ocr import ddddocr                # code written for ddddocr: only the import changes
    ocr = ddddocr.DdddOcr(show_ad=False)
    print(ocr.classification(open("captcha.png", "rb").read()))

The recognizer code is the repository's ``models/`` package, installed here as ``captcha_ocr.models`` so that
nothing called ``models`` lands in site-packages; the default model ships inside the package.
"""

from __future__ import annotations

from .models.preprocess import ImageError
from .reader import Reader, Reading

__all__ = ["ImageError", "Reader", "Reading", "__version__"]
__version__ = "0.2.0"
