"""The model on a device: loading IR / ONNX (:mod:`.model`, :mod:`.files`), devices and precision
(:mod:`.devices`), preprocessing (:mod:`.preprocess`, :mod:`.prepared`, :mod:`.preprocess_import`), images,
labels, ports, errors, atomic file writes (:mod:`.storage`), the model config (:mod:`.config`) and the bundled
resources. It imports nothing else of ov_explain."""
