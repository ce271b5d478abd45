"""Model tools beside explaining: ``inspect`` (what white-box would use), INT8 quantisation, the XAI IR export
and model_api's model_info keys."""
