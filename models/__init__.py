"""Everything a trained model is: charset and labels, preprocessing, CTC codec, metrics, arithmetic solver,
the three recognizers, checkpoints, ONNX export and the inference engine.

The serving tier imports only the torch-free modules (charset, arith, preprocess, codec, metrics, engine with
the onnxruntime backend); the recognizers, checkpoints and export import torch.
"""
