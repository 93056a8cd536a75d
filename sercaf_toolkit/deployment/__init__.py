"""Deployment: the exported model folder (``EncoderClassifier``),
``EmotionPredictor`` and ``sercaf predict``, ONNX export and the
onnxruntime runner."""
