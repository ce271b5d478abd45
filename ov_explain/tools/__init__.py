"""Model tools beside explaining: ``inspect`` (what white-box would use), INT8 quantisation and model_api's
model_info keys."""
